//! The build cache decision for one step, over a [`StepRunner`] the
//! engine implements (the mechanism: keys over its state and context,
//! running containers, writing layers, the cache table). What happens in
//! which order is decided here, once, and tested without root.

use crate::{Inst, Step};

/// What the engine does for a step, in the order [`run_step`] asks.
pub trait StepRunner {
    /// What a step leaves: an image id.
    type Image;
    type Error;

    /// Applies an ARG to the stage's state. ARG makes no image and never
    /// touches the cache.
    fn declare_args(&mut self, step: &Step) -> Result<(), Self::Error>;

    /// The step's cache key over the current state (see [`crate::cache`]).
    fn cache_key(&mut self, step: &Step) -> Result<String, Self::Error>;

    /// The image cached under `key`, made the stage's current state; `None`
    /// when there is no entry, or its image is gone.
    fn use_cached(&mut self, key: &str, step: &Step) -> Result<Option<Self::Image>, Self::Error>;

    /// Runs the step for real (a container, a snapshot of its changes as a
    /// layer, or a config change) and makes its image the current state.
    fn run(&mut self, step: &Step) -> Result<Self::Image, Self::Error>;

    /// Records that `key` gave `image`.
    fn remember(&mut self, key: &str, image: &Self::Image) -> Result<(), Self::Error>;
}

/// How a step was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<I> {
    /// An ARG: state changed, no image.
    Declared,
    /// Taken from the cache.
    Cached(I),
    /// Run, and remembered for next time.
    Built(I),
}

/// Does one step: from the cache when `use_cache` and the key has an
/// entry, otherwise for real. A step run for real is remembered even when
/// the cache was not used (`--no-cache` refreshes the cache).
pub fn run_step<R: StepRunner>(
    runner: &mut R,
    step: &Step,
    use_cache: bool,
) -> Result<Outcome<R::Image>, R::Error> {
    if let Inst::Arg(_) = step.inst {
        runner.declare_args(step)?;
        return Ok(Outcome::Declared);
    }
    let key = runner.cache_key(step)?;
    if use_cache {
        if let Some(image) = runner.use_cached(&key, step)? {
            return Ok(Outcome::Cached(image));
        }
    }
    let image = runner.run(step)?;
    runner.remember(&key, &image)?;
    Ok(Outcome::Built(image))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::cache::Key;
    use crate::parse;

    /// A fake engine: images are numbers, the state is the current image,
    /// and every call is logged.
    #[derive(Default)]
    struct Fake {
        cache: HashMap<String, u32>,
        /// Images the store still has.
        images: Vec<u32>,
        current: u32,
        next: u32,
        args: Vec<String>,
        log: Vec<String>,
        fail_on: Option<&'static str>,
    }

    impl StepRunner for Fake {
        type Image = u32;
        type Error = String;

        fn declare_args(&mut self, step: &Step) -> Result<(), String> {
            self.log.push(format!("arg {}", step.text));
            self.args.push(step.text.clone());
            Ok(())
        }

        fn cache_key(&mut self, step: &Step) -> Result<String, String> {
            let mut k = Key::new(&self.current.to_string());
            k.step(&step.inst).list("args", &self.args);
            Ok(k.digest())
        }

        fn use_cached(&mut self, key: &str, step: &Step) -> Result<Option<u32>, String> {
            self.log.push(format!("lookup {}", step.text));
            let hit = self
                .cache
                .get(key)
                .copied()
                .filter(|i| self.images.contains(i));
            if let Some(i) = hit {
                self.current = i;
            }
            Ok(hit)
        }

        fn run(&mut self, step: &Step) -> Result<u32, String> {
            self.log.push(format!("run {}", step.text));
            if self.fail_on == Some(step.text.as_str()) {
                return Err(format!("{} failed", step.text));
            }
            self.next += 1;
            self.current = self.next;
            self.images.push(self.next);
            Ok(self.next)
        }

        fn remember(&mut self, key: &str, image: &u32) -> Result<(), String> {
            self.cache.insert(key.to_string(), *image);
            Ok(())
        }
    }

    fn steps(text: &str) -> Vec<Step> {
        parse(&format!("FROM x\n{text}")).unwrap().stages[0]
            .steps
            .clone()
    }

    /// Runs `steps` from a fresh state, as a new build would.
    fn build(f: &mut Fake, steps: &[Step], use_cache: bool) -> Result<Vec<Outcome<u32>>, String> {
        f.current = 0;
        f.args.clear();
        f.log.clear();
        steps.iter().map(|s| run_step(f, s, use_cache)).collect()
    }

    const DF: &str = "ARG V=1\nRUN one\nCOPY a /a\nENV E=1\nRUN two\n";

    #[test]
    fn second_build_comes_from_the_cache() {
        let mut f = Fake::default();
        let s = steps(DF);
        let first = build(&mut f, &s, true).unwrap();
        assert_eq!(
            first,
            [
                Outcome::Declared,
                Outcome::Built(1),
                Outcome::Built(2),
                Outcome::Built(3),
                Outcome::Built(4)
            ]
        );
        let again = build(&mut f, &s, true).unwrap();
        assert_eq!(
            again,
            [
                Outcome::Declared,
                Outcome::Cached(1),
                Outcome::Cached(2),
                Outcome::Cached(3),
                Outcome::Cached(4)
            ]
        );
        assert!(f.log.iter().all(|l| !l.starts_with("run")), "{:?}", f.log);
    }

    #[test]
    fn a_changed_step_and_everything_after_it_run_again() {
        let mut f = Fake::default();
        build(&mut f, &steps(DF), true).unwrap();
        let changed = build(&mut f, &steps(&DF.replace("ENV E=1", "ENV E=2")), true).unwrap();
        assert_eq!(
            changed,
            [
                Outcome::Declared,
                Outcome::Cached(1),
                Outcome::Cached(2),
                Outcome::Built(5),
                Outcome::Built(6)
            ]
        );
        // An ARG value counts for the steps after it.
        let other_arg = build(&mut f, &steps(&DF.replace("V=1", "V=2")), true).unwrap();
        assert_eq!(other_arg[1], Outcome::Built(7));
    }

    #[test]
    fn no_cache_runs_everything_and_refreshes_the_cache() {
        let mut f = Fake::default();
        let s = steps(DF);
        build(&mut f, &s, true).unwrap();
        let fresh = build(&mut f, &s, false).unwrap();
        assert_eq!(fresh[1..], [5, 6, 7, 8].map(Outcome::Built));
        assert!(
            f.log.iter().all(|l| !l.starts_with("lookup")),
            "{:?}",
            f.log
        );
        let again = build(&mut f, &s, true).unwrap();
        assert_eq!(again[1..], [5, 6, 7, 8].map(Outcome::Cached));
    }

    #[test]
    fn an_entry_whose_image_is_gone_runs_again() {
        let mut f = Fake::default();
        let s = steps(DF);
        build(&mut f, &s, true).unwrap();
        f.images.retain(|&i| i != 2);
        let r = build(&mut f, &s, true).unwrap();
        assert_eq!(r[1..3], [Outcome::Cached(1), Outcome::Built(5)]);
    }

    #[test]
    fn a_failed_step_stops_the_build_and_is_not_remembered() {
        let mut f = Fake {
            fail_on: Some("COPY a /a"),
            ..Default::default()
        };
        let s = steps(DF);
        assert_eq!(build(&mut f, &s, true).unwrap_err(), "COPY a /a failed");
        assert_eq!(f.log.last().map(String::as_str), Some("run COPY a /a"));
        assert_eq!(f.cache.len(), 1, "only RUN one is cached");
    }
}
