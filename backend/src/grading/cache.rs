//! The read snapshots: the serialized answers of the last reads, valid while
//! the generation is the one they were read at; every write moves the
//! generation on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use super::answer::Answer;

#[derive(Default)]
pub struct ReadCache {
    generation: AtomicU64,
    list: RwLock<Option<(u64, Answer)>>,
    students: RwLock<HashMap<i64, (u64, Answer)>>,
}

impl ReadCache {
    /// The generation now.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Moves the generation on: the new one.
    pub fn invalidate(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The list of students kept at `generation`, if any.
    pub fn list(&self, generation: u64) -> Option<Answer> {
        self.list.read().as_ref().filter(|(at, _)| *at == generation).map(|(_, answer)| answer.clone())
    }

    pub fn keep_list(&self, generation: u64, answer: Answer) {
        *self.list.write() = Some((generation, answer));
    }

    /// Student `id` kept at `generation`, if any.
    pub fn student(&self, generation: u64, id: i64) -> Option<Answer> {
        self.students.read().get(&id).filter(|(at, _)| *at == generation).map(|(_, answer)| answer.clone())
    }

    /// Keeps student `id` at `generation`, dropping any kept at another.
    pub fn keep_student(&self, generation: u64, id: i64, answer: Answer) {
        let mut students = self.students.write();
        students.retain(|_, (at, _)| *at == generation);
        students.insert(id, (generation, answer));
    }
}
