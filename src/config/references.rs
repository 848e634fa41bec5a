//! What refers to what across tables: unknown or misused dependencies and
//! group members, and the dependency order (with cycles reported). Runs on
//! the names and references every table declares, even when other keys of
//! that table are invalid, so one typo does not hide a cycle.

use std::collections::{BTreeSet, HashMap};

use toml::de::DeValue;
use toml::Spanned;

use super::decode::{join, Table};
use super::diagnostics::{did_you_mean, table_key, Diags};
use super::DependencyCondition;
use crate::restart_policy::ProgramKind;

/// What the cross-reference checks need from a program, read straight from
/// its table: a bad value elsewhere in the program must not hide an unknown
/// dependency or a cycle (every error is reported in one run).
pub(super) struct Declared {
    pub(super) name: String,
    /// `None` when `type` is invalid (reported elsewhere).
    pub(super) kind: Option<ProgramKind>,
    /// Each well-formed dependency, spanned at its name.
    pub(super) depends_on: Vec<(Spanned<String>, DependencyCondition)>,
}

impl Declared {
    pub(super) fn read(name: &str, t: &Table<'_>) -> Self {
        let kind = match t.get("type").map(|v| v.get_ref().as_str()) {
            None | Some(Some("service")) => Some(ProgramKind::Service),
            Some(Some("oneshot")) => Some(ProgramKind::Oneshot),
            Some(_) => None,
        };
        let mut depends_on = Vec::new();
        match t.get("depends_on").map(|v| v.get_ref()) {
            Some(DeValue::Array(items)) => {
                for item in items {
                    if let Some(dep) = item.get_ref().as_str() {
                        depends_on.push((
                            Spanned::new(item.span(), dep.to_string()),
                            DependencyCondition::Ready,
                        ));
                    }
                }
            }
            Some(DeValue::Table(map)) => {
                for (dep, cond) in map {
                    let cond = match cond.get_ref().as_str() {
                        Some("started") => DependencyCondition::Started,
                        Some("ready") => DependencyCondition::Ready,
                        Some("completed") => DependencyCondition::Completed,
                        _ => continue,
                    };
                    depends_on.push((Spanned::new(dep.span(), dep.get_ref().to_string()), cond));
                }
            }
            _ => {}
        }
        depends_on.sort_by_key(|(dep, _)| dep.span().start);
        Self {
            name: name.to_string(),
            kind,
            depends_on,
        }
    }
}

/// A group's name and the string items of its `programs`, spanned.
pub(super) type GroupMembers = (String, Vec<Spanned<String>>);

/// The string items of a group's `programs`, spanned; type errors are
/// reported by `parse_group`.
pub(super) fn group_programs(t: &Table<'_>) -> Vec<Spanned<String>> {
    match t.get("programs").map(|v| v.get_ref()) {
        Some(DeValue::Array(items)) => items
            .iter()
            .filter_map(|item| {
                item.get_ref()
                    .as_str()
                    .map(|name| Spanned::new(item.span(), name.to_string()))
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn check_cross_references(
    programs: &[Declared],
    groups: &[GroupMembers],
    diags: &mut Diags<'_>,
) {
    let by_name: HashMap<&str, &Declared> = programs.iter().map(|p| (p.name.as_str(), p)).collect();
    let names: Vec<&str> = programs.iter().map(|p| p.name.as_str()).collect();
    let unknown = |name: &str| {
        let hint = did_you_mean(name, &names)
            .map(|h| format!(" (did you mean \"{h}\"?)"))
            .unwrap_or_default();
        format!("unknown program \"{name}\"{hint}")
    };
    for program in programs {
        let key = join(&table_key("program", &program.name), "depends_on");
        let mut seen = BTreeSet::new();
        for (dep, condition) in &program.depends_on {
            let span = dep.span();
            let dep = dep.get_ref();
            if !seen.insert(dep.as_str()) {
                diags.error(&span, &key, format!("\"{dep}\" is listed twice"));
                continue;
            }
            if dep == &program.name {
                diags.error(&span, &key, format!("dependency cycle: {dep} -> {dep}"));
                continue;
            }
            match by_name.get(dep.as_str()) {
                Some(target) => {
                    if *condition == DependencyCondition::Completed
                        && target.kind == Some(ProgramKind::Service)
                    {
                        diags.error(
                            &span,
                            &key,
                            format!("\"{dep}\" is a service and never completes; \"completed\" needs type = \"oneshot\""),
                        );
                    }
                }
                None => diags.error(&span, &key, unknown(dep)),
            }
        }
    }
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for (group, members) in groups {
        let key = join(&table_key("group", group), "programs");
        for member in members {
            let span = member.span();
            let name = member.get_ref().as_str();
            if !by_name.contains_key(name) {
                diags.error(&span, &key, unknown(name));
            }
            if let Some(previous) = owner.insert(name, group) {
                if previous == group {
                    diags.error(&span, &key, format!("\"{name}\" is listed twice"));
                } else {
                    diags.error(
                        &span,
                        &key,
                        format!("program \"{name}\" is already in group \"{previous}\"; a program belongs to at most one group"),
                    );
                }
            }
        }
    }
}

/// Topological order (dependencies first, file order between independent
/// programs). Every cycle is reported with its path, at the first program's
/// `depends_on` entry naming the next one.
pub(super) fn dependency_order(
    programs: &[Declared],
    diags: &mut Diags<'_>,
) -> Option<Vec<String>> {
    let index: HashMap<&str, usize> = programs
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    struct Walk<'a> {
        programs: &'a [Declared],
        index: HashMap<&'a str, usize>,
        marks: Vec<Mark>,
        stack: Vec<usize>,
        order: Vec<String>,
        cycles: Vec<Vec<usize>>,
    }
    impl Walk<'_> {
        fn visit(&mut self, i: usize) {
            match self.marks[i] {
                Mark::Done => return,
                Mark::Active => {
                    let start = self.stack.iter().position(|&s| s == i).unwrap_or(0);
                    let mut cycle = self.stack[start..].to_vec();
                    cycle.push(i);
                    self.cycles.push(cycle);
                    return;
                }
                Mark::New => {}
            }
            self.marks[i] = Mark::Active;
            self.stack.push(i);
            let programs = self.programs;
            for (dep, _) in &programs[i].depends_on {
                if dep.get_ref() == &programs[i].name {
                    continue; // reported as a self-cycle already
                }
                if let Some(&j) = self.index.get(dep.get_ref().as_str()) {
                    self.visit(j);
                }
            }
            self.stack.pop();
            self.marks[i] = Mark::Done;
            self.order.push(programs[i].name.clone());
        }
    }
    let mut walk = Walk {
        programs,
        index,
        marks: vec![Mark::New; programs.len()],
        stack: Vec::new(),
        order: Vec::with_capacity(programs.len()),
        cycles: Vec::new(),
    };
    for i in 0..programs.len() {
        walk.visit(i);
    }
    for cycle in &walk.cycles {
        let names: Vec<&str> = cycle.iter().map(|&c| programs[c].name.as_str()).collect();
        let first = &programs[cycle[0]];
        let next = names.get(1).copied().unwrap_or(first.name.as_str());
        let span = first
            .depends_on
            .iter()
            .find(|(dep, _)| dep.get_ref() == next)
            .map(|(dep, _)| dep.span())
            .unwrap_or(0..0);
        diags.error(
            &span,
            &join(&table_key("program", &first.name), "depends_on"),
            format!("dependency cycle: {}", names.join(" -> ")),
        );
    }
    walk.cycles.is_empty().then_some(walk.order)
}
