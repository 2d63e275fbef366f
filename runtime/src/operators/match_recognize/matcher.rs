//! The row-pattern automaton: a pattern compiled once to a program, and a
//! matcher that finds the **preferred match** from one start row, fed one
//! row at a time, so matching resumes across epochs where it stopped.
//!
//! # Algorithm
//!
//! The pattern compiles to a program of a Pike VM (Thompson's construction
//! with priorities): `Var(v)` consumes a row if v's DEFINE holds for it,
//! `Split(a, b)` forks a thread that prefers `a`, `Jump`, the anchors, the
//! exclusion marks and `Accept`. Alternation forks left to right, a greedy
//! quantifier prefers one more iteration and a reluctant one prefers to
//! stop; bounded repetition is unrolled (`A{2,3}` is `A A A?`), PERMUTE is
//! the alternation of its orders, lexicographic in the listed elements.
//!
//! The matcher keeps its live threads in preference order, each parked at
//! a `Var` waiting for the next row, with its labels (the rows it mapped so
//! far, in a shared parent-linked list: a fork copies nothing). A row steps
//! every thread in order; a thread reaching `Accept` records a match and
//! cuts every thread after it (none of them can be preferred), while the
//! threads before it run on and replace the match if one of them accepts
//! later. When no thread is left, the recorded match is the preferred one:
//! exactly what a backtracking search in preference order finds first.
//!
//! Empty iterations: the epsilon closure of one step visits each
//! instruction once per thread position, so `(A*)*` or `()*` cannot loop,
//! and a loop whose body matched nothing is left (its minimum being met),
//! as the standard says.
//!
//! No blow-up: when every DEFINE reads only the current row (and rows at
//! physical offsets from it), two threads at the same instruction behave
//! the same from then on, so only the first (preferred) is kept: at most
//! one thread per instruction, and a step costs O(program size). When a
//! DEFINE reads the match's history (another variable's rows, FIRST/LAST,
//! aggregates, CLASSIFIER of other rows), threads are never merged, and
//! their number is capped by [`MAX_THREADS`] (the query fails with a clear
//! message instead of running out of memory).

use std::sync::Arc;

use crate::error::{Result, RuntimeError};
use crate::operators::match_recognize::spec::PatternSpec;

/// The most instructions a pattern may compile to (bounded repetition is
/// unrolled).
pub const MAX_PROGRAM: usize = 10_000;

/// The most live threads of one matcher whose DEFINEs read the match's
/// history (so threads cannot be merged).
pub const MAX_THREADS: usize = 100_000;

/// One instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instruction {
    Var(usize),
    /// Fork: try `.0` first, then `.1`.
    Split(usize, usize),
    Jump(usize),
    /// `^`.
    Start,
    /// `$`.
    End,
    ExcludeBegin,
    ExcludeEnd,
    /// An optional iteration of a body that can match empty starts: note
    /// the position in slot `.0`.
    IterationStart(usize),
    /// It ends: if it consumed no row, the loop ends (go to `.1`), as the
    /// standard says of an empty iteration once the minimum is met.
    IterationEnd(usize, usize),
    Accept,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Program {
    pub instructions: Vec<Instruction>,
    /// Iteration slots each thread keeps.
    pub slots: usize,
    /// Threads at one instruction may be merged (see the module's
    /// `# Algorithm`).
    pub mergeable: bool,
}

impl Program {
    pub fn compile(pattern: &PatternSpec, mergeable: bool) -> Result<Program> {
        let mut compiler = Compiler { instructions: Vec::new(), slots: 0 };
        compiler.emit(pattern)?;
        compiler.push(Instruction::Accept)?;
        Ok(Program { instructions: compiler.instructions, slots: compiler.slots, mergeable })
    }
}

struct Compiler {
    instructions: Vec<Instruction>,
    slots: usize,
}

/// Whether `pattern` can match without consuming a row.
fn nullable(pattern: &PatternSpec) -> bool {
    match pattern {
        PatternSpec::Variable(_) => false,
        PatternSpec::Concat(items) | PatternSpec::Permute(items) => items.iter().all(nullable),
        PatternSpec::Alternation(items) => items.iter().any(nullable),
        PatternSpec::Quantified { pattern, min, .. } => *min == 0 || nullable(pattern),
        PatternSpec::Exclude(inner) => nullable(inner),
        PatternSpec::Start | PatternSpec::End | PatternSpec::Empty => true,
    }
}

impl Compiler {
    fn push(&mut self, instruction: Instruction) -> Result<usize> {
        if self.instructions.len() >= MAX_PROGRAM {
            return Err(RuntimeError::user(format!(
                "the pattern compiles to more than {MAX_PROGRAM} instructions (large bounded quantifiers are unrolled): write a smaller pattern"
            )));
        }
        self.instructions.push(instruction);
        Ok(self.instructions.len() - 1)
    }

    fn patch(&mut self, at: usize, instruction: Instruction) {
        self.instructions[at] = instruction;
    }

    fn emit(&mut self, pattern: &PatternSpec) -> Result<()> {
        match pattern {
            PatternSpec::Variable(var) => {
                self.push(Instruction::Var(*var))?;
            }
            PatternSpec::Concat(items) => {
                for item in items {
                    self.emit(item)?;
                }
            }
            PatternSpec::Alternation(items) => self.alternation(items)?,
            PatternSpec::Permute(items) => {
                let orders = permutations(items.len());
                let alternatives: Vec<PatternSpec> = orders
                    .into_iter()
                    .map(|order| PatternSpec::Concat(order.into_iter().map(|index| items[index].clone()).collect()))
                    .collect();
                self.alternation(&alternatives)?;
            }
            PatternSpec::Exclude(inner) => {
                self.push(Instruction::ExcludeBegin)?;
                self.emit(inner)?;
                self.push(Instruction::ExcludeEnd)?;
            }
            PatternSpec::Start => {
                self.push(Instruction::Start)?;
            }
            PatternSpec::End => {
                self.push(Instruction::End)?;
            }
            PatternSpec::Empty => {}
            PatternSpec::Quantified { pattern, min, max, greedy } => {
                for _ in 0..*min {
                    self.emit(pattern)?;
                }
                // Optional iterations of a body that can match empty note
                // where they start, so an empty one ends the loop.
                let slot = nullable(pattern).then(|| {
                    self.slots += 1;
                    self.slots - 1
                });
                let mut checks = Vec::new();
                match max {
                    None => {
                        // L: split(body, out); body; jump L
                        let split = self.push(Instruction::Jump(0))?;
                        if let Some(slot) = slot {
                            self.push(Instruction::IterationStart(slot))?;
                        }
                        self.emit(pattern)?;
                        if slot.is_some() {
                            checks.push(self.push(Instruction::Jump(0))?);
                        }
                        self.push(Instruction::Jump(split))?;
                        let out = self.instructions.len();
                        self.patch(split, fork(*greedy, split + 1, out));
                        for check in checks {
                            self.patch(check, Instruction::IterationEnd(slot.unwrap_or(0), out));
                        }
                    }
                    Some(max) => {
                        // (body (body ...)?)? : each optional nests the next.
                        let mut splits = Vec::new();
                        for _ in *min..*max {
                            let split = self.push(Instruction::Jump(0))?;
                            splits.push(split);
                            if let Some(slot) = slot {
                                self.push(Instruction::IterationStart(slot))?;
                            }
                            self.emit(pattern)?;
                            if slot.is_some() {
                                checks.push(self.push(Instruction::Jump(0))?);
                            }
                        }
                        let out = self.instructions.len();
                        for split in splits {
                            self.patch(split, fork(*greedy, split + 1, out));
                        }
                        for check in checks {
                            self.patch(check, Instruction::IterationEnd(slot.unwrap_or(0), out));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn alternation(&mut self, items: &[PatternSpec]) -> Result<()> {
        let mut jumps = Vec::new();
        for (index, item) in items.iter().enumerate() {
            if index + 1 < items.len() {
                let split = self.push(Instruction::Jump(0))?;
                self.emit(item)?;
                jumps.push(self.push(Instruction::Jump(0))?);
                let next = self.instructions.len();
                self.patch(split, Instruction::Split(split + 1, next));
            } else {
                self.emit(item)?;
            }
        }
        let out = self.instructions.len();
        for jump in jumps {
            self.patch(jump, Instruction::Jump(out));
        }
        Ok(())
    }
}

fn fork(greedy: bool, body: usize, out: usize) -> Instruction {
    if greedy { Instruction::Split(body, out) } else { Instruction::Split(out, body) }
}

/// Every order of `0..n`, lexicographic.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for first in 0..n {
        for rest in permutations(n - 1) {
            let mut order = vec![first];
            order.extend(rest.into_iter().map(|index| if index >= first { index + 1 } else { index }));
            out.push(order);
        }
    }
    out
}

/// One row a thread mapped: its number in the partition, its variable and
/// whether it is excluded from ALL ROWS PER MATCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    pub row: u64,
    pub var: usize,
    pub excluded: bool,
}

/// A thread's labels, newest first, shared between forks.
#[derive(Debug, Clone, Default)]
pub struct Labels(Option<Arc<LabelNode>>);

#[derive(Debug)]
struct LabelNode {
    label: Label,
    parent: Labels,
}

impl Labels {
    fn with(&self, label: Label) -> Labels {
        Labels(Some(Arc::new(LabelNode { label, parent: self.clone() })))
    }

    /// The labels, oldest first.
    pub fn to_vec(&self) -> Vec<Label> {
        let mut out = Vec::new();
        let mut node = self.0.as_ref();
        while let Some(current) = node {
            out.push(current.label);
            node = current.parent.0.as_ref();
        }
        out.reverse();
        out
    }
}

/// What the matcher asks its caller: does variable `var`'s DEFINE hold
/// for row `row`, with the thread's rows so far `labels` (`row` itself is
/// mapped to `var` for the question)? A caller whose DEFINEs read only the
/// current row need not look at `labels`.
pub trait Conditions {
    fn holds(&mut self, var: usize, row: u64, labels: &Labels) -> Result<bool>;
}

#[derive(Debug, Clone)]
struct Thread {
    pc: usize,
    /// How many exclusions `{- ... -}` the thread is inside.
    excluded: u32,
    labels: Labels,
    /// Where each optional iteration it is in started (see
    /// [`Instruction::IterationStart`]); stale once a row is consumed.
    slots: Arc<Vec<u64>>,
}

/// The outcome of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Threads are still alive: more rows are needed.
    Running,
    /// The preferred match (possibly empty), oldest label first.
    Matched(Vec<Label>),
    /// No match starts at the start row.
    NoMatch,
}

/// Buffers the steps of matching reuse, so a step allocates nothing but
/// the labels of the rows it maps. One per operator, lent to each call.
#[derive(Debug, Default)]
pub struct Scratch {
    /// The threads a row stepped, before their closure.
    stepped: Vec<Thread>,
    /// The closure's depth-first stack.
    stack: Vec<Thread>,
    /// `visited[pc] == visit`: the current thread's closure reached `pc`.
    visited: Vec<u32>,
    visit: u32,
    /// `parked[pc] == step`: a thread parked at `pc` in this closure
    /// (merging).
    parked: Vec<u32>,
    step: u32,
}

impl Scratch {
    fn prepare(&mut self, instructions: usize) {
        if self.visited.len() < instructions {
            self.visited.resize(instructions, 0);
            self.parked.resize(instructions, 0);
        }
    }

    /// A stamp no entry of `marks` holds yet.
    fn next(stamp: &mut u32, marks: &mut [u32]) -> u32 {
        *stamp = stamp.wrapping_add(1);
        if *stamp == 0 {
            marks.fill(0);
            *stamp = 1;
        }
        *stamp
    }
}

/// Finds the preferred match starting at one row.
#[derive(Debug, Clone)]
pub struct Matcher {
    threads: Vec<Thread>,
    best: Option<Labels>,
    /// The row the next `push_row` must be.
    next_row: u64,
}

impl Matcher {
    /// Starts at row `start` of a partition (`^` holds at row 0).
    pub fn start(program: &Program, start: u64, scratch: &mut Scratch) -> Result<Matcher> {
        let mut matcher = Matcher { threads: Vec::new(), best: None, next_row: start };
        scratch.stepped.clear();
        scratch.stepped.push(Thread {
            pc: 0,
            excluded: 0,
            labels: Labels::default(),
            slots: Arc::new(vec![0; program.slots]),
        });
        matcher.closure(program, scratch, false)?;
        Ok(matcher)
    }

    /// The row the matcher waits for.
    pub fn next_row(&self) -> u64 {
        self.next_row
    }

    /// The labels of the most preferred live thread, or of the match found
    /// so far (for timeout rows).
    pub fn partial(&self) -> Vec<Label> {
        match (&self.best, self.threads.first()) {
            (_, Some(thread)) => thread.labels.to_vec(),
            (Some(best), None) => best.to_vec(),
            (None, None) => Vec::new(),
        }
    }

    /// What is decided so far.
    pub fn progress(&self) -> Progress {
        match (&self.best, self.threads.is_empty()) {
            (_, false) => Progress::Running,
            (Some(best), true) => Progress::Matched(best.to_vec()),
            (None, true) => Progress::NoMatch,
        }
    }

    /// Feeds the next row.
    pub fn push_row(
        &mut self,
        program: &Program,
        conditions: &mut dyn Conditions,
        scratch: &mut Scratch,
    ) -> Result<Progress> {
        let row = self.next_row;
        self.next_row += 1;
        scratch.stepped.clear();
        for thread in self.threads.drain(..) {
            // Threads waiting at `$` die: a row follows.
            let Instruction::Var(var) = program.instructions[thread.pc] else { continue };
            if conditions.holds(var, row, &thread.labels)? {
                let labels = thread.labels.with(Label { row, var, excluded: thread.excluded > 0 });
                scratch.stepped.push(Thread { pc: thread.pc + 1, labels, ..thread });
            }
        }
        self.closure(program, scratch, false)?;
        Ok(self.progress())
    }

    /// No more rows come for this match (the partition ended, `at_end`, or
    /// WITHIN cut it off): what is matched is final.
    pub fn finish(&mut self, program: &Program, at_end: bool, scratch: &mut Scratch) -> Result<Progress> {
        if at_end {
            // `$` holds now: the threads waiting at it pass.
            scratch.stepped.clear();
            scratch.stepped.append(&mut self.threads);
            self.closure(program, scratch, true)?;
        }
        self.threads.clear();
        Ok(self.progress())
    }

    /// Follows every thread of `scratch.stepped` through the instructions
    /// that consume no row, in preference order, until each is parked at a
    /// `Var` (into `self.threads`); records matches and cuts the threads
    /// after an accepting one.
    fn closure(&mut self, program: &Program, scratch: &mut Scratch, at_end: bool) -> Result<()> {
        scratch.prepare(program.instructions.len());
        let step = Scratch::next(&mut scratch.step, &mut scratch.parked);
        let row = self.next_row;
        let mut input = std::mem::take(&mut scratch.stepped);
        self.threads.clear();
        'threads: for thread in input.drain(..) {
            // Depth-first, preferred branch first.
            let visit = Scratch::next(&mut scratch.visit, &mut scratch.visited);
            scratch.stack.clear();
            scratch.stack.push(thread);
            while let Some(thread) = scratch.stack.pop() {
                if scratch.visited[thread.pc] == visit {
                    continue;
                }
                scratch.visited[thread.pc] = visit;
                let stack = &mut scratch.stack;
                match program.instructions[thread.pc] {
                    // A `$` before the end waits: the next row kills it,
                    // the end lets it pass.
                    Instruction::End if !at_end => {
                        if program.mergeable {
                            if scratch.parked[thread.pc] == step {
                                continue;
                            }
                            scratch.parked[thread.pc] = step;
                        }
                        self.threads.push(thread);
                    }
                    Instruction::Var(_) => {
                        if program.mergeable {
                            if scratch.parked[thread.pc] == step {
                                continue;
                            }
                            scratch.parked[thread.pc] = step;
                        }
                        self.threads.push(thread);
                        if self.threads.len() > MAX_THREADS {
                            return Err(RuntimeError::user(format!(
                                "the pattern keeps more than {MAX_THREADS} partial matches alive at once (an ambiguous pattern over a DEFINE that reads the match's history): make it less ambiguous"
                            )));
                        }
                    }
                    Instruction::Split(first, second) => {
                        stack.push(Thread { pc: second, ..thread.clone() });
                        stack.push(Thread { pc: first, ..thread });
                    }
                    Instruction::Jump(to) => stack.push(Thread { pc: to, ..thread }),
                    Instruction::Start => {
                        if row == 0 {
                            stack.push(Thread { pc: thread.pc + 1, ..thread });
                        }
                    }
                    Instruction::End => stack.push(Thread { pc: thread.pc + 1, ..thread }),
                    Instruction::ExcludeBegin => {
                        stack.push(Thread { pc: thread.pc + 1, excluded: thread.excluded + 1, ..thread })
                    }
                    Instruction::IterationStart(slot) => {
                        let mut slots = thread.slots.as_ref().clone();
                        if slots.len() <= slot {
                            slots.resize(slot + 1, u64::MAX);
                        }
                        slots[slot] = row;
                        stack.push(Thread { pc: thread.pc + 1, slots: Arc::new(slots), ..thread });
                    }
                    Instruction::IterationEnd(slot, out) => {
                        // Slots are stale (so never equal) once a row was
                        // consumed, and absent after a restore.
                        let empty = thread.slots.get(slot) == Some(&row);
                        let pc = if empty { out } else { thread.pc + 1 };
                        stack.push(Thread { pc, ..thread });
                    }
                    Instruction::ExcludeEnd => {
                        stack.push(Thread { pc: thread.pc + 1, excluded: thread.excluded.saturating_sub(1), ..thread })
                    }
                    Instruction::Accept => {
                        // Preferred over everything after it: cut.
                        self.best = Some(thread.labels);
                        break 'threads;
                    }
                }
            }
        }
        input.clear();
        scratch.stepped = input;
        Ok(())
    }

    /// The matcher as plain numbers, for checkpoints: the next row, the
    /// match found so far, and each thread's instruction, exclusion flag
    /// and labels.
    pub fn snapshot(&self) -> Vec<i64> {
        let mut out = vec![self.next_row as i64];
        let labels = |out: &mut Vec<i64>, labels: &[Label]| {
            out.push(labels.len() as i64);
            for label in labels {
                out.extend([label.row as i64, label.var as i64, i64::from(label.excluded)]);
            }
        };
        match &self.best {
            Some(best) => {
                out.push(1);
                labels(&mut out, &best.to_vec());
            }
            None => out.push(0),
        }
        out.push(self.threads.len() as i64);
        for thread in &self.threads {
            out.extend([thread.pc as i64, i64::from(thread.excluded)]);
            labels(&mut out, &thread.labels.to_vec());
        }
        out
    }

    /// The matcher a [`snapshot`](Matcher::snapshot) was taken of.
    pub fn restore(values: &[i64]) -> Result<Matcher> {
        let bad = || RuntimeError::internal("a damaged pattern matcher snapshot");
        let mut values = values.iter().copied();
        let mut next = || values.next().ok_or_else(bad);
        let next_row = next()? as u64;
        let labels = |next: &mut dyn FnMut() -> Result<i64>| -> Result<Vec<Label>> {
            let count = next()?;
            (0..count)
                .map(|_| Ok(Label { row: next()? as u64, var: next()? as usize, excluded: next()? != 0 }))
                .collect()
        };
        let chain = |labels: Vec<Label>| labels.into_iter().fold(Labels::default(), |chain, label| chain.with(label));
        let best = if next()? != 0 { Some(chain(labels(&mut next)?)) } else { None };
        let count = next()?;
        let mut threads = Vec::new();
        for _ in 0..count {
            let pc = next()? as usize;
            let excluded = next()? as u32;
            threads.push(Thread { pc, excluded, labels: chain(labels(&mut next)?), slots: Arc::new(Vec::new()) });
        }
        Ok(Matcher { threads, best, next_row })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::random::SplitMix64;

    /// Var v holds at row r iff table[r][v].
    struct Table(Vec<Vec<bool>>);

    impl Conditions for Table {
        fn holds(&mut self, var: usize, row: u64, _labels: &Labels) -> Result<bool> {
            Ok(self.0.get(row as usize).is_some_and(|vars| vars[var]))
        }
    }

    fn run(pattern: &PatternSpec, table: &mut Table, start: u64, at_end: bool) -> Option<Vec<(u64, usize)>> {
        let program = Program::compile(pattern, true).unwrap();
        let mut matcher = Matcher::start(&program, start, &mut Scratch::default()).unwrap();
        let mut progress = matcher.progress();
        while progress == Progress::Running && (matcher.next_row() as usize) < table.0.len() {
            progress = matcher.push_row(&program, table, &mut Scratch::default()).unwrap();
        }
        if progress == Progress::Running {
            progress = matcher.finish(&program, at_end, &mut Scratch::default()).unwrap();
        }
        match progress {
            Progress::Matched(labels) => Some(labels.into_iter().map(|label| (label.row, label.var)).collect()),
            _ => None,
        }
    }

    /// A plain backtracking search in preference order: the first complete
    /// match it finds is the preferred one.
    fn reference(pattern: &PatternSpec, table: &Table, start: u64, at_end: bool) -> Option<Vec<(u64, usize)>> {
        fn go(
            items: &[&PatternSpec],
            table: &Table,
            row: u64,
            labels: &mut Vec<(u64, usize)>,
            at_end: bool,
            depth: usize,
        ) -> bool {
            if depth > 200 {
                return false;
            }
            let Some((first, rest)) = items.split_first() else { return true };
            match first {
                PatternSpec::Variable(var) => {
                    let holds = table.0.get(row as usize).is_some_and(|vars| vars[*var]);
                    if holds {
                        labels.push((row, *var));
                        if go(rest, table, row + 1, labels, at_end, depth + 1) {
                            return true;
                        }
                        labels.pop();
                    }
                    false
                }
                PatternSpec::Concat(parts) => {
                    let mut all: Vec<&PatternSpec> = parts.iter().collect();
                    all.extend_from_slice(rest);
                    go(&all, table, row, labels, at_end, depth + 1)
                }
                PatternSpec::Alternation(parts) => parts.iter().any(|part| {
                    let mut all = vec![part];
                    all.extend_from_slice(rest);
                    go(&all, table, row, labels, at_end, depth + 1)
                }),
                PatternSpec::Permute(parts) => permutations(parts.len()).into_iter().any(|order| {
                    let mut all: Vec<&PatternSpec> = order.iter().map(|index| &parts[*index]).collect();
                    all.extend_from_slice(rest);
                    go(&all, table, row, labels, at_end, depth + 1)
                }),
                PatternSpec::Exclude(inner) => {
                    let mut all = vec![inner.as_ref()];
                    all.extend_from_slice(rest);
                    go(&all, table, row, labels, at_end, depth + 1)
                }
                PatternSpec::Start => row == 0 && go(rest, table, row, labels, at_end, depth + 1),
                PatternSpec::End => {
                    at_end && row as usize == table.0.len() && go(rest, table, row, labels, at_end, depth + 1)
                }
                PatternSpec::Empty => go(rest, table, row, labels, at_end, depth + 1),
                PatternSpec::Quantified { pattern, min, max, greedy } => {
                    if *min > 0 {
                        let less = PatternSpec::Quantified {
                            pattern: pattern.clone(),
                            min: min - 1,
                            max: max.map(|max| max - 1),
                            greedy: *greedy,
                        };
                        let mut all = vec![pattern.as_ref(), &less];
                        all.extend_from_slice(rest);
                        return go(&all, table, row, labels, at_end, depth + 1);
                    }
                    if *max == Some(0) {
                        return go(rest, table, row, labels, at_end, depth + 1);
                    }
                    let more = PatternSpec::Quantified {
                        pattern: pattern.clone(),
                        min: 0,
                        max: max.map(|max| max - 1),
                        greedy: *greedy,
                    };
                    // One more iteration (an empty one recurses until the
                    // depth bound, then stops: the same rows).
                    let once = |labels: &mut Vec<(u64, usize)>| {
                        let mut all = vec![pattern.as_ref(), &more];
                        all.extend_from_slice(rest);
                        go(&all, table, row, labels, at_end, depth + 1)
                    };
                    let stop = |labels: &mut Vec<(u64, usize)>| go(rest, table, row, labels, at_end, depth + 1);
                    match greedy {
                        true => once(labels) || stop(labels),
                        false => stop(labels) || once(labels),
                    }
                }
            }
        }
        let mut labels = Vec::new();
        go(&[pattern], table, start, &mut labels, at_end, 0).then_some(labels)
    }

    fn random_pattern(random: &mut SplitMix64, depth: u32) -> PatternSpec {
        let choice = if depth == 0 { random.next_u64() % 2 } else { random.next_u64() % 9 };
        match choice {
            0 | 1 => PatternSpec::Variable((random.next_u64() % 3) as usize),
            2 => PatternSpec::Concat((0..2).map(|_| random_pattern(random, depth - 1)).collect()),
            3 => PatternSpec::Alternation((0..2).map(|_| random_pattern(random, depth - 1)).collect()),
            4 | 5 => {
                let min = (random.next_u64() % 3) as u32;
                let max = match random.next_u64() % 3 {
                    0 => None,
                    _ => Some(min + (random.next_u64() % 3) as u32),
                };
                PatternSpec::Quantified {
                    pattern: Box::new(random_pattern(random, depth - 1)),
                    min,
                    max,
                    greedy: random.next_u64().is_multiple_of(2),
                }
            }
            6 => PatternSpec::Permute((0..2).map(|_| random_pattern(random, depth - 1)).collect()),
            7 => PatternSpec::Exclude(Box::new(random_pattern(random, depth - 1))),
            _ => match random.next_u64() % 3 {
                0 => PatternSpec::Start,
                1 => PatternSpec::End,
                _ => PatternSpec::Empty,
            },
        }
    }

    #[test]
    fn the_automaton_finds_the_match_a_backtracking_search_prefers() {
        let mut random = SplitMix64::new(7);
        let mut compared = 0;
        for _ in 0..3000 {
            let pattern = random_pattern(&mut random, 3);
            let rows = (random.next_u64() % 7) as usize;
            let table: Vec<Vec<bool>> =
                (0..rows).map(|_| (0..3).map(|_| !random.next_u64().is_multiple_of(3)).collect()).collect();
            let mut table = Table(table);
            for start in 0..=rows as u64 {
                for at_end in [false, true] {
                    let expected = reference(&pattern, &table, start, at_end);
                    let found = run(&pattern, &mut table, start, at_end);
                    assert_eq!(found, expected, "{pattern:?} over {:?} from {start} (at end {at_end})", table.0);
                    compared += 1;
                }
            }
        }
        assert!(compared > 10_000, "{compared}");
    }

    #[test]
    fn ambiguous_patterns_keep_one_thread_per_instruction() {
        let (a, b, c) = (PatternSpec::Variable(0), PatternSpec::Variable(1), PatternSpec::Variable(2));
        let star = |p: PatternSpec| PatternSpec::Quantified { pattern: Box::new(p), min: 0, max: None, greedy: true };
        let plus = |p: PatternSpec| PatternSpec::Quantified { pattern: Box::new(p), min: 1, max: None, greedy: true };
        for pattern in [
            PatternSpec::Concat(vec![star(PatternSpec::Alternation(vec![a.clone(), b.clone()])), c.clone()]),
            PatternSpec::Concat(vec![plus(plus(a.clone())), b.clone()]),
        ] {
            let program = Program::compile(&pattern, true).unwrap();
            let mut table = Table(vec![vec![true, true, false]; 10_000]);
            let mut matcher = Matcher::start(&program, 0, &mut Scratch::default()).unwrap();
            let mut most = 0;
            for _ in 0..10_000 {
                assert_eq!(matcher.push_row(&program, &mut table, &mut Scratch::default()).unwrap(), Progress::Running);
                most = most.max(matcher.threads.len());
            }
            assert!(most <= program.instructions.len(), "{most} threads");
        }
    }

    #[test]
    fn a_matcher_restores_from_its_snapshot() {
        let pattern = PatternSpec::Concat(vec![
            PatternSpec::Variable(0),
            PatternSpec::Quantified { pattern: Box::new(PatternSpec::Variable(1)), min: 1, max: None, greedy: true },
            PatternSpec::Variable(2),
        ]);
        let program = Program::compile(&pattern, true).unwrap();
        let mut table = Table(vec![vec![true, false, false], vec![false, true, false], vec![false, true, true]]);
        let mut matcher = Matcher::start(&program, 0, &mut Scratch::default()).unwrap();
        matcher.push_row(&program, &mut table, &mut Scratch::default()).unwrap();
        matcher.push_row(&program, &mut table, &mut Scratch::default()).unwrap();
        let mut restored = Matcher::restore(&matcher.snapshot()).unwrap();
        assert_eq!(restored.snapshot(), matcher.snapshot());
        let a = matcher.push_row(&program, &mut table, &mut Scratch::default()).unwrap();
        let b = restored.push_row(&program, &mut table, &mut Scratch::default()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn limits() {
        let huge = PatternSpec::Quantified {
            pattern: Box::new(PatternSpec::Variable(0)),
            min: 20_000,
            max: None,
            greedy: true,
        };
        assert!(Program::compile(&huge, true).unwrap_err().to_string().contains("10000 instructions"));
    }
}
