//! Dockerfiles to stages and steps, the variable expansion Docker applies
//! to their words, and `.dockerignore` patterns. Executing steps is the
//! engine's job; this crate holds no policy about images or containers.

pub mod cache;
mod dockerfile;
pub mod exec;
pub mod expand;
pub mod ignore;
pub mod plan;

pub use dockerfile::{
    parse, parse_trigger, CmdForm, CopySpec, Dockerfile, Health, Inst, ParseError, Src, Stage, Step,
};

/// Every error of this crate is about the build's input (a Dockerfile, a
/// .dockerignore, build arguments, `--target`): one kind for all.
macro_rules! input_errors {
    ($($t:ty),*) => {$(
        impl $t {
            pub fn kind(&self) -> berth_oci::ErrorKind {
                berth_oci::ErrorKind::InvalidArgument
            }
        }
    )*};
}
input_errors!(
    ParseError,
    expand::ExpandError,
    ignore::IgnoreError,
    plan::PlanError
);
