//! Spec errors: each names the file, line and column, the node, what was wrong and, where we
//! can guess, what was meant.

use std::fmt;
use std::path::{Path, PathBuf};

/// A position in a spec file (1-based line and column).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loc {
    pub line: usize,
    pub col: usize,
}

/// Where an error points: a place in a file, or a command-line argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    File { path: PathBuf, loc: Option<Loc> },
    Arg(String),
}

/// One problem with a pipeline spec or its overrides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    pub origin: Origin,
    pub node: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl SpecError {
    pub fn at(file: &Path, loc: Option<Loc>, message: impl Into<String>) -> SpecError {
        SpecError {
            origin: Origin::File { path: file.to_path_buf(), loc },
            node: None,
            message: message.into(),
            hint: None,
        }
    }

    pub fn arg(arg: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError { origin: Origin::Arg(arg.into()), node: None, message: message.into(), hint: None }
    }

    pub fn node(mut self, node: impl Into<String>) -> SpecError {
        self.node = Some(node.into());
        self
    }

    pub fn hint(mut self, hint: Option<String>) -> SpecError {
        self.hint = hint;
        self
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::File { path, loc: Some(loc) } => write!(f, "{}:{}:{}: ", path.display(), loc.line, loc.col)?,
            Origin::File { path, loc: None } => write!(f, "{}: ", path.display())?,
            Origin::Arg(a) => write!(f, "in `{a}`: ")?,
        }
        if let Some(node) = &self.node {
            write!(f, "node `{node}`: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

/// Every problem found in a spec, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

impl From<SpecError> for SpecErrors {
    fn from(e: SpecError) -> SpecErrors {
        SpecErrors(vec![e])
    }
}
