-- A project's environments (issue 26): a secret in a project must name one
-- of them. Every project gets development, staging and production when it is
-- created; here every existing project gets those and every environment its
-- secrets already use. Secrets without a project keep free-form environments.
CREATE TABLE project_environments (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, project_id, name)
);
INSERT INTO project_environments (tenant_id, project_id, name, created_at)
    SELECT p.tenant_id, p.id, e.name, p.created_at FROM projects p
    CROSS JOIN (SELECT 'development' AS name UNION ALL SELECT 'staging' UNION ALL SELECT 'production') e;
INSERT INTO project_environments (tenant_id, project_id, name, created_at)
    SELECT s.tenant_id, s.project_id, s.environment, MIN(s.created_at) FROM secrets s
    WHERE s.project_id IS NOT NULL AND s.environment <> ''
    GROUP BY s.tenant_id, s.project_id, s.environment
    ON CONFLICT DO NOTHING;

-- A project's template: the secret names every environment must hold, each
-- with why (secr's templates); `required` false: listed, never missing.
-- Validation answers the missing required ones.
CREATE TABLE project_templates (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT,
    required    BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, project_id, name)
);
