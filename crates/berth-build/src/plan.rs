//! Which stages a build runs, and in what order: the stages the target
//! needs (through FROM, `COPY --from` and `RUN --mount=from=`), grouped in
//! waves whose stages depend only on earlier waves (so a wave's stages may
//! build at the same time), and the step numbers progress output shows.
//!
//! Pure Dockerfile logic: running steps is the engine's job.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use crate::expand::ExpandError;
use crate::{Dockerfile, Inst};

/// Why a build cannot be planned.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    /// A FROM word could not be expanded with the global ARGs.
    #[error(transparent)]
    Expand(#[from] ExpandError),
    /// `--target` names no stage.
    #[error("target stage \"{0}\" could not be found")]
    NoTarget(String),
    /// A stage refers by number to a stage that is not before it.
    #[error("stage {number} does not exist before stage {stage}")]
    NoSuchStage {
        /// The referring stage and its FROM line.
        stage: usize,
        line: usize,
        number: usize,
    },
}

/// What a build of one target runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The stages needed, in waves: every dependency of a stage is in an
    /// earlier wave. Within a wave, Dockerfile order.
    pub waves: Vec<Vec<usize>>,
    /// The step number of each needed stage's FROM line; its steps follow.
    /// Numbers follow the Dockerfile, whatever order stages finish in.
    pub first_step: BTreeMap<usize, usize>,
    /// Steps in all needed stages, FROM lines included.
    pub total: usize,
}

/// The stage a `--target` names (by name, case-insensitively), or the last.
pub fn target(df: &Dockerfile, name: Option<&str>) -> Result<usize, PlanError> {
    match name {
        Some(t) => {
            let lower = t.to_ascii_lowercase();
            df.stages
                .iter()
                .position(|s| s.name.as_deref() == Some(lower.as_str()))
                .ok_or_else(|| PlanError::NoTarget(t.to_string()))
        }
        None => Ok(df.stages.len().saturating_sub(1)),
    }
}

/// The stage a name or number refers to, among the stages before `before`.
pub fn stage_index(df: &Dockerfile, name: &str, before: usize) -> Option<usize> {
    if let Ok(n) = name.parse::<usize>() {
        return (n < before).then_some(n);
    }
    let lower = name.to_ascii_lowercase();
    df.stages[..before.min(df.stages.len())]
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
}

/// The earlier stages stage `i` reads: its FROM (expanded by `base`),
/// `COPY --from` and `RUN --mount=from=`. Names that are no stage are
/// images; a number that is no earlier stage is an error.
pub fn deps(
    df: &Dockerfile,
    i: usize,
    base: &dyn Fn(&str) -> Result<String, ExpandError>,
) -> Result<Vec<usize>, PlanError> {
    let s = &df.stages[i];
    let mut refs = vec![base(&s.base)?];
    for step in &s.steps {
        match &step.inst {
            Inst::Copy(c) => refs.extend(c.from.clone()),
            Inst::Run { mounts, .. } => {
                for m in mounts {
                    for kv in m.split(',') {
                        if let Some(v) = kv.strip_prefix("from=") {
                            refs.push(v.to_string());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for r in refs {
        if let Some(j) = stage_index(df, &r, i) {
            out.push(j);
        } else if let Ok(number) = r.parse::<usize>() {
            return Err(PlanError::NoSuchStage {
                stage: i,
                line: s.line,
                number,
            });
        }
    }
    Ok(out)
}

/// Plans the build of stage `target`. `base` expands a FROM word with the
/// global ARGs.
pub fn plan(
    df: &Dockerfile,
    target: usize,
    base: &dyn Fn(&str) -> Result<String, ExpandError>,
) -> Result<Plan, PlanError> {
    let mut deps_of: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if let Entry::Vacant(slot) = deps_of.entry(i) {
            let d = deps(df, i, base)?;
            todo.extend(&d);
            slot.insert(d);
        }
    }
    let mut order: Vec<usize> = deps_of.keys().copied().collect();
    order.sort();
    // Dependencies always come earlier in the file, so one pass in file
    // order sees every dependency's level before it is needed.
    let mut level: HashMap<usize, usize> = HashMap::new();
    let mut waves: Vec<Vec<usize>> = Vec::new();
    for &i in &order {
        let l = deps_of[&i].iter().map(|d| level[d] + 1).max().unwrap_or(0);
        level.insert(i, l);
        if waves.len() <= l {
            waves.resize(l + 1, Vec::new());
        }
        waves[l].push(i);
    }
    let mut first_step = BTreeMap::new();
    let mut total = 0;
    for &i in &order {
        first_step.insert(i, total);
        total += 1 + df.stages[i].steps.len();
    }
    Ok(Plan {
        waves,
        first_step,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn no_args(w: &str) -> Result<String, ExpandError> {
        crate::expand::word(w, &|n| (n == "BASE").then(|| "base".to_string()), '\\')
    }

    fn plan_of(text: &str, target_name: Option<&str>) -> Result<Plan, PlanError> {
        let df = parse(text).unwrap();
        let t = target(&df, target_name)?;
        plan(&df, t, &no_args)
    }

    const MULTI: &str = "\
FROM busybox AS base
RUN a
FROM base AS left
RUN b
FROM busybox AS right
COPY x /x
FROM scratch AS unused
FROM base
COPY --from=left /a /a
RUN --mount=type=bind,from=right,target=/r c
";

    #[test]
    fn stages_in_waves_with_dockerfile_step_numbers() {
        let p = plan_of(MULTI, None).unwrap();
        assert_eq!(p.waves, vec![vec![0, 2], vec![1], vec![4]]);
        // Stage 3 is not needed: it takes no step numbers.
        assert_eq!(
            p.first_step.into_iter().collect::<Vec<_>>(),
            [(0, 0), (1, 2), (2, 4), (4, 6)]
        );
        assert_eq!(p.total, 9);
    }

    #[test]
    fn target_stops_early_and_is_case_insensitive() {
        let p = plan_of(MULTI, Some("LEFT")).unwrap();
        assert_eq!(p.waves, vec![vec![0], vec![1]]);
        assert_eq!(p.total, 4);
        assert_eq!(
            plan_of(MULTI, Some("nope")).unwrap_err().to_string(),
            "target stage \"nope\" could not be found"
        );
    }

    #[test]
    fn stages_by_number_and_from_expanded_with_global_args() {
        let p = plan_of(
            "FROM busybox\nFROM scratch AS BASE\nFROM $BASE\nCOPY --from=0 /a /a\n",
            None,
        )
        .unwrap();
        assert_eq!(p.waves, vec![vec![0, 1], vec![2]]);
        let e = plan_of(
            "FROM busybox\nCOPY --from=1 /a /a\nFROM busybox\n",
            Some("0"),
        );
        assert_eq!(
            e.unwrap_err(),
            PlanError::NoTarget("0".into()),
            "targets are names, not numbers"
        );
        let df = parse("FROM busybox\nCOPY --from=1 /a /a\nFROM busybox\n").unwrap();
        assert_eq!(
            plan(&df, 1, &no_args).unwrap().waves,
            vec![vec![1]],
            "stage 0 is not needed by stage 1"
        );
        let e = plan(&df, 0, &no_args).unwrap_err();
        assert_eq!(
            e,
            PlanError::NoSuchStage {
                stage: 0,
                line: 1,
                number: 1
            }
        );
        assert_eq!(e.to_string(), "stage 1 does not exist before stage 0");
    }

    #[test]
    fn a_stage_cannot_name_itself_or_a_later_one() {
        // A later stage's name is an image name as far as planning goes.
        let p = plan_of(
            "FROM later AS first\nFROM busybox AS later\n",
            Some("first"),
        )
        .unwrap();
        assert_eq!(p.waves, vec![vec![0]]);
        let df = parse("FROM busybox AS a\nCOPY --from=a /x /y\n").unwrap();
        assert_eq!(stage_index(&df, "a", 0), None);
        assert_eq!(plan(&df, 0, &no_args).unwrap().waves, vec![vec![0]]);
    }

    #[test]
    fn bad_from_words_are_errors() {
        let df = parse("FROM ${X:?unset}\n").unwrap();
        assert_eq!(plan(&df, 0, &no_args).unwrap_err().to_string(), "X: unset");
    }
}
