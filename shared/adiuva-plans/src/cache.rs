//! Plans and playbooks in the shared short-lived store, so every Lambda instance sees the same
//! ones (the reference kept an LRU per process, which instances would not share).

use std::time::Duration;

use adiuva_kv::{KvError, KvStore};

use crate::{ExecutionPlan, builtin_playbooks};

/// The store namespace of plans; its keys are plan ids.
pub const NAMESPACE: &str = "plans";

/// How long a plan cached with [`PlanCache::cache_plan`] is kept. Built-in playbooks are kept
/// without a limit.
pub const CACHED_PLAN_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Plans by id in a [`KvStore`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PlanCache {
    store: KvStore,
}

impl PlanCache {
    pub fn new(store: KvStore) -> Self {
        Self { store }
    }

    /// Stores `plan` as playbook `plan_id` (its `plan_id` field is set to it) for
    /// [`CACHED_PLAN_TTL`], replacing any plan with that id.
    pub async fn cache_plan(&self, plan_id: &str, plan: &ExecutionPlan) -> Result<(), KvError> {
        self.store
            .put(
                NAMESPACE,
                plan_id,
                &encode(plan_id, plan)?,
                Some(CACHED_PLAN_TTL),
            )
            .await
    }

    pub async fn get_plan(&self, plan_id: &str) -> Result<Option<ExecutionPlan>, KvError> {
        match self.store.get(NAMESPACE, plan_id).await? {
            Some(value) => decode(plan_id, value).map(Some),
            None => Ok(None),
        }
    }

    /// Every playbook, sorted by id.
    pub async fn get_all_playbooks(&self) -> Result<Vec<ExecutionPlan>, KvError> {
        self.store
            .list(NAMESPACE)
            .await?
            .into_iter()
            .map(|(plan_id, value)| decode(&plan_id, value))
            .collect()
    }

    /// Makes sure the built-in playbooks are in the store, as this version of the code defines
    /// them. Run once per process (the plans function does it on its first request, not at
    /// cold start): a conditional write per playbook, and a read plus a write only when a
    /// stored one differs (written by another version of the code).
    pub async fn ensure_builtin_playbooks(&self) -> Result<(), KvError> {
        for playbook in builtin_playbooks() {
            let plan_id = playbook
                .plan_id
                .clone()
                .expect("built-in playbooks have ids");
            let value = encode(&plan_id, &playbook)?;
            if self
                .store
                .put_if_absent(NAMESPACE, &plan_id, &value, None)
                .await?
            {
                continue;
            }
            if self.store.get(NAMESPACE, &plan_id).await?.as_ref() != Some(&value) {
                self.store.put(NAMESPACE, &plan_id, &value, None).await?;
            }
        }
        Ok(())
    }
}

fn encode(plan_id: &str, plan: &ExecutionPlan) -> Result<serde_json::Value, KvError> {
    let mut plan = plan.clone();
    plan.plan_id = Some(plan_id.to_owned());
    serde_json::to_value(plan).map_err(KvError::failed)
}

/// The stored plan, with `plan_id` always the key it is stored under.
fn decode(plan_id: &str, value: serde_json::Value) -> Result<ExecutionPlan, KvError> {
    let mut plan: ExecutionPlan = serde_json::from_value(value).map_err(KvError::failed)?;
    plan.plan_id = Some(plan_id.to_owned());
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExecutionPlanBuilder, PromptTemplateRegistry};
    use adiuva_kv::MemoryStore;
    use serde_json::json;

    fn cache() -> PlanCache {
        PlanCache::new(KvStore::Memory(MemoryStore::new()))
    }

    #[tokio::test]
    async fn builtin_playbooks_are_written_once_and_listed_by_id() {
        let cache = cache();
        assert!(cache.get_all_playbooks().await.unwrap().is_empty());
        cache.ensure_builtin_playbooks().await.unwrap();
        cache.ensure_builtin_playbooks().await.unwrap();
        let playbooks = cache.get_all_playbooks().await.unwrap();
        assert_eq!(playbooks, builtin_playbooks());
        let listed = serde_json::to_string(&playbooks).unwrap();
        crate::tests::assert_no_prompt_text(&PromptTemplateRegistry::builtin(), &listed);
    }

    #[tokio::test]
    async fn an_outdated_builtin_playbook_is_replaced() {
        let cache = cache();
        let outdated = ExecutionPlanBuilder::new("task_agent")
            .add_step("old", None)
            .build()
            .unwrap();
        cache
            .store
            .put(
                NAMESPACE,
                "create_tasks_from_project",
                &serde_json::to_value(&outdated).unwrap(),
                None,
            )
            .await
            .unwrap();
        cache.ensure_builtin_playbooks().await.unwrap();
        assert_eq!(
            cache
                .get_plan("create_tasks_from_project")
                .await
                .unwrap()
                .as_ref(),
            builtin_playbooks().first()
        );
    }

    #[tokio::test]
    async fn cached_plans_carry_their_id() {
        let cache = cache();
        let plan = ExecutionPlanBuilder::new("note_agent")
            .add_llm_step("tpl_note_agent_default", serde_json::Map::new())
            .build()
            .unwrap();
        cache.cache_plan("mine", &plan).await.unwrap();
        let stored = cache.get_plan("mine").await.unwrap().unwrap();
        assert_eq!(stored.plan_id.as_deref(), Some("mine"));
        assert_eq!(stored.steps, plan.steps);
        assert_eq!(cache.get_plan("other").await.unwrap(), None);

        cache
            .store
            .put(NAMESPACE, "broken", &json!({"not": "a plan"}), None)
            .await
            .unwrap();
        assert!(matches!(
            cache.get_plan("broken").await,
            Err(KvError::Failed(_))
        ));
    }
}
