//! Projects group secrets; a project-scoped key sees only its projects.

use super::principal::WithDetail;
use super::views::*;
use super::{Permission, Principal, Vault, audited, names};
use crate::error::{Error, Result};
use crate::store::{ProjectRow, now_millis};

impl Vault {
    pub(super) async fn visible_project(&self, p: &Principal, id: &str) -> Result<ProjectRow> {
        let row = if names::is_id(id) { self.store.get_project(&p.tenant_id, id).await? } else { None };
        let row = row.ok_or(Error::NotFound("project"))?;
        p.require_project(Some(&row.id))?;
        Ok(row)
    }

    pub async fn create_project(&self, p: &Principal, req: CreateProject) -> Result<ProjectView> {
        audited!(
            self,
            p,
            "project.create",
            "project",
            None,
            async {
                p.require_key("change projects")?;
                p.require(Permission::Write)?;
                if p.project_scope.is_some() {
                    return Err(Error::ScopeDenied("a project-scoped key cannot create projects".into()));
                }
                let name = project_name(&req.name)?;
                let now = now_millis();
                let row = ProjectRow {
                    id: uuid::Uuid::new_v4().to_string(),
                    tenant_id: p.tenant_id.clone(),
                    name,
                    description: req.description.map(|d| names::text("description", &d, 1024)).transpose()?,
                    tags: serde_json::to_string(&names::tags(&req.tags)?).expect("serialisable"),
                    created_at: now,
                    updated_at: now,
                    secret_count: 0,
                };
                let audit = p.audit("project.create", "project", Some(&row.id), "success").detail(serde_json::json!({ "name": row.name }));
                self.store.insert_project(&row, &audit).await?;
                let mut view = ProjectView::try_from(&row)?;
                view.environments = crate::store::environments::DEFAULT_ENVIRONMENTS.iter().map(|e| e.to_string()).collect();
                Ok(view)
            }
            .await
        )
    }

    pub async fn list_projects(&self, p: &Principal) -> Result<ProjectList> {
        audited!(
            self,
            p,
            "project.list",
            "project",
            None,
            async {
                p.require(Permission::Read)?;
                let rows = self.store.list_projects(&p.tenant_id).await?;
                let mut projects = rows.iter().filter(|r| p.covers(Some(&r.id))).map(ProjectView::try_from).collect::<Result<Vec<_>>>()?;
                self.with_environments(&p.tenant_id, &mut projects).await?;
                self.record_read(p, p.audit("project.list", "project", None, "success")).await?;
                Ok(ProjectList { count: projects.len(), projects })
            }
            .await
        )
    }

    pub async fn get_project(&self, p: &Principal, id: &str) -> Result<ProjectView> {
        audited!(
            self,
            p,
            "project.read",
            "project",
            Some(id),
            async {
                p.require(Permission::Read)?;
                let row = self.visible_project(p, id).await?;
                let mut view = ProjectView::try_from(&row)?;
                self.with_environments(&p.tenant_id, std::slice::from_mut(&mut view)).await?;
                self.record_read(p, p.audit("project.read", "project", Some(&row.id), "success")).await?;
                Ok(view)
            }
            .await
        )
    }

    pub async fn update_project(&self, p: &Principal, id: &str, req: UpdateProject) -> Result<ProjectView> {
        audited!(
            self,
            p,
            "project.update",
            "project",
            Some(id),
            async {
                p.require_key("change projects")?;
                p.require(Permission::Write)?;
                let mut row = self.visible_project(p, id).await?;
                // A damaged row is refused before it is written over, not after.
                ProjectView::try_from(&row)?;
                if let Some(n) = &req.name {
                    row.name = project_name(n)?;
                }
                if let Some(d) = &req.description {
                    row.description = Some(names::text("description", d, 1024)?).filter(|d| !d.is_empty());
                }
                if let Some(t) = &req.tags {
                    row.tags = serde_json::to_string(&names::tags(t)?).expect("serialisable");
                }
                row.updated_at = now_millis();
                let audit = p.audit("project.update", "project", Some(&row.id), "success").detail(serde_json::json!({ "name": row.name }));
                if !self.store.update_project(&row, &audit).await? {
                    return Err(Error::NotFound("project"));
                }
                let mut view = ProjectView::try_from(&row)?;
                self.with_environments(&p.tenant_id, std::slice::from_mut(&mut view)).await?;
                Ok(view)
            }
            .await
        )
    }

    pub async fn delete_project(&self, p: &Principal, id: &str) -> Result<Deleted> {
        audited!(
            self,
            p,
            "project.delete",
            "project",
            Some(id),
            async {
                p.require_key("change projects")?;
                p.require(Permission::Write)?;
                // Like creating one: a project's lifetime is the tenant's business,
                // not that of a key confined to it.
                if p.project_scope.is_some() {
                    return Err(Error::ScopeDenied("a project-scoped key cannot delete projects".into()));
                }
                let row = self.visible_project(p, id).await?;
                let audit = p.audit("project.delete", "project", Some(&row.id), "success").detail(serde_json::json!({ "name": row.name }));
                // Erasing what is still restorable is an admin's decision, as a
                // purge is: a write key cannot end the retention this way.
                let purge_deleted = p.require(Permission::Admin).is_ok();
                if !self.store.delete_project(&p.tenant_id, &row.id, purge_deleted, &audit).await? {
                    return Err(Error::NotFound("project"));
                }
                Ok(Deleted { id: row.id, deleted: true, restorable_until: None })
            }
            .await
        )
    }
}

fn project_name(raw: &str) -> Result<String> {
    names::label("project name", raw, 128)
}
