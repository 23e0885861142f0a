//! An in-memory [`TaskStore`]: the same conditional-write rules as the DynamoDB adapter, for unit
//! tests of use cases and handlers. Storage itself is tested against the emulator, not this.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::StoreError;
use crate::lifecycle::Transition;
use crate::ports::{TaskStore, WriteOutcome};
use crate::task::{Task, TaskId, TaskStatus};
use crate::time::Timestamp;

#[derive(Debug, Default)]
pub struct MemoryStore {
    tasks: Mutex<HashMap<TaskId, Task>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Task>> {
        self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl TaskStore for MemoryStore {
    async fn insert(&self, task: &Task) -> Result<(), StoreError> {
        let mut tasks = self.tasks();
        if tasks.contains_key(&task.task_id) {
            return Err(StoreError::AlreadyExists);
        }
        tasks.insert(task.task_id.clone(), task.clone());
        Ok(())
    }

    async fn get(&self, task_id: &TaskId) -> Result<Option<Task>, StoreError> {
        Ok(self.tasks().get(task_id).cloned())
    }

    async fn apply(&self, transition: &Transition) -> Result<WriteOutcome, StoreError> {
        let mut tasks = self.tasks();
        match tasks.get_mut(&transition.task_id) {
            Some(task) if transition.matches(task) => {
                *task = transition.applied_to(task);
                Ok(WriteOutcome::Applied(task.clone()))
            }
            current => Ok(WriteOutcome::Rejected(current.cloned())),
        }
    }

    async fn count(&self, status: TaskStatus, since: Option<Timestamp>) -> Result<u64, StoreError> {
        let tasks = self.tasks();
        let matching = tasks.values().filter(|t| t.status == status && since.is_none_or(|since| t.updated_at >= since));
        Ok(matching.count() as u64)
    }

    async fn oldest_update(&self, status: TaskStatus) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.tasks().values().filter(|t| t.status == status).map(|t| t.updated_at).min())
    }
}
