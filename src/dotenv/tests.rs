use super::*;

fn ok(text: &str) -> Vec<(String, String)> {
    parse(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn reads_the_usual_forms() {
    let text = "# a comment\n\nexport A=1\nB = two words  # trailing\nC='single # not a comment'\nD=\"x\\ny\\t\\\"q\\\" \\\\ \\$\"\n\
                E=\nF=a#b\nG='multi\nline'\nH=\"also\nmulti\"  # c\r\nI=é😀\n";
    assert_eq!(
        ok(text),
        pairs(&[
            ("A", "1"),
            ("B", "two words"),
            ("C", "single # not a comment"),
            ("D", "x\ny\t\"q\" \\ \\$"),
            ("E", ""),
            ("F", "a#b"),
            ("G", "multi\nline"),
            ("H", "also\nmulti"),
            ("I", "é😀"),
        ])
    );
}

#[test]
fn reports_every_bad_line_without_quoting_it() {
    let errors = parse("GOOD=1\nno equals here\nBAD NAME=x\nA='x' junk\nGOOD=2\n").unwrap_err();
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![2, 3, 4, 5]);
    for e in &errors {
        assert!(!e.message.contains("junk") && !e.message.contains("equals"), "{}", e.message);
    }
    assert!(errors[3].message.contains("line 1"));
    let unclosed = parse("A=1\nB=\"open\nC=3\n").unwrap_err();
    assert_eq!(unclosed.len(), 1);
    assert_eq!(unclosed[0].line, 2);
}

#[test]
fn writes_what_it_reads_back() {
    let values = [
        "plain",
        "",
        " leading and trailing ",
        "it's",
        "say \"hi\"",
        "both ' and \"",
        "back\\slash",
        "two \\\\ in a row",
        "C:\\path\\to",
        "ends with \\",
        "a#b # c",
        "k=v=w",
        "multi\nline\n",
        "cr\r\nlf",
        "ünïcødé 😀 中文",
        "$HOME ${HOME} $(whoami)",
        "\t tab",
        "'",
        "\"",
        "\\'\\\"",
    ];
    let entries: Vec<(String, String)> = values.iter().enumerate().map(|(i, v)| (format!("K_{i}"), v.to_string())).collect();
    let text = write(&entries);
    assert_eq!(ok(&text), entries);
}

#[test]
fn quotes_only_what_needs_it() {
    let text = write(&[("A", "plain $x"), ("B", "C:\\dir"), ("C", "it's"), ("D", "a\\\\b"), ("E", "end\\"), ("F", "two\nlines")]);
    assert_eq!(text.as_str(), "A='plain $x'\nB='C:\\dir'\nC=\"it's\"\nD=\"a\\\\\\\\b\"\nE=\"end\\\\\"\nF='two\nlines'\n");
}
