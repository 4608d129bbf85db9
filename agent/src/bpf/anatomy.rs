//! Attaching the pause anatomy programs (`ebpf/src/anatomy.rs`): the
//! scheduler tracepoints that split each pause's time into running,
//! runnable and blocked.
//!
//! The programs read fixed offsets of the tracepoints' records, so before
//! attaching, the kernel's own description of each record
//! (`events/<category>/<name>/format` under tracefs) is compared with them:
//! a kernel with another layout gets a clear error, never wrong numbers.

use std::path::{Path, PathBuf};

use pausewatch_common::anatomy::{FIELDS, Field};
use thiserror::Error;

/// Why the anatomy programs cannot run on this kernel.
#[derive(Debug, Error)]
pub enum AnatomyError {
    /// A format file could not be read.
    #[error("cannot read {path}: {source}")]
    Format {
        /// The format file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The kernel's record differs from the one the programs were built for.
    #[error(
        "this kernel's {event} record has {name} {found}, the pause anatomy programs read it \
         at offset {offset} (size {size}); run with --no-anatomy"
    )]
    Layout {
        /// `category/name` of the tracepoint.
        event: &'static str,
        /// The field.
        name: &'static str,
        /// Where the programs read it.
        offset: usize,
        /// How many bytes they read.
        size: usize,
        /// What the format file says instead.
        found: String,
    },
}

/// Where a field is in a tracefs format file's text: its (offset, size), if
/// the file has a field of that name.
///
/// Lines look like `\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;`.
/// No crate parses these files; the grammar is these few `key:value;` pairs.
pub fn field_in_format(format: &str, name: &str) -> Option<(usize, usize)> {
    format.lines().find_map(|line| {
        let mut declaration = None;
        let mut offset = None;
        let mut size = None;
        for part in line.split(';') {
            let Some((key, value)) = part.trim().split_once(':') else {
                continue;
            };
            match key {
                "field" => declaration = Some(value),
                "offset" => offset = value.trim().parse().ok(),
                "size" => size = value.trim().parse().ok(),
                _ => {}
            }
        }
        // The declaration's last word is the name, possibly with `[N]`.
        let declared = declaration?.split_whitespace().last()?;
        let declared = declared.split('[').next()?;
        (declared == name).then_some((offset?, size?))
    })
}

/// Checks every field the anatomy programs read against the format files
/// under `tracefs` (the mount point, e.g. `/sys/kernel/tracing`).
pub fn check_layout(tracefs: &Path) -> Result<(), AnatomyError> {
    for field in FIELDS {
        check_field(tracefs, &field)?;
    }
    Ok(())
}

fn check_field(tracefs: &Path, field: &Field) -> Result<(), AnatomyError> {
    let path = tracefs.join("events").join(field.event).join("format");
    let text = std::fs::read_to_string(&path).map_err(|source| AnatomyError::Format {
        path: path.clone(),
        source,
    })?;
    let layout_error = |found: String| AnatomyError::Layout {
        event: field.event,
        name: field.name,
        offset: field.offset,
        size: field.size,
        found,
    };
    match field_in_format(&text, field.name) {
        Some((offset, size)) if offset == field.offset && size == field.size => Ok(()),
        Some((offset, size)) => Err(layout_error(format!("at offset {offset} (size {size})"))),
        None => Err(layout_error("missing".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The record as Linux 6.x describes it (abridged to the fields).
    const SWITCH: &str = "name: sched_switch\nID: 372\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
        \tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;\n\
        \tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;\n\
        \tfield:pid_t next_pid;\toffset:56;\tsize:4;\tsigned:1;\n\
        \nprint fmt: \"prev_comm=%s prev_pid=%d\", REC->prev_comm, REC->prev_pid\n";

    #[test]
    fn finds_fields_by_their_declared_name() {
        assert_eq!(field_in_format(SWITCH, "prev_pid"), Some((24, 4)));
        assert_eq!(field_in_format(SWITCH, "prev_state"), Some((32, 8)));
        assert_eq!(field_in_format(SWITCH, "prev_comm"), Some((8, 16)));
        // `pid` is not `prev_pid`, and the print format is no field.
        assert_eq!(field_in_format(SWITCH, "pid"), None);
    }

    #[test]
    fn a_moved_field_is_a_layout_error() {
        let dir = std::env::temp_dir().join(format!("pw-anatomy-{}", std::process::id()));
        let event = dir.join("events/sched/sched_switch");
        std::fs::create_dir_all(&event).unwrap();
        std::fs::write(
            event.join("format"),
            SWITCH.replace("offset:32", "offset:40"),
        )
        .unwrap();
        let err = check_field(&dir, &pausewatch_common::anatomy::SWITCH_PREV_STATE).unwrap_err();
        assert!(
            err.to_string().contains(
                "prev_state at offset 40 (size 8), the pause anatomy programs read it at offset 32"
            ),
            "{err}"
        );
        assert!(check_field(&dir, &pausewatch_common::anatomy::SWITCH_NEXT_PID).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The running kernel's formats, read independently of the parser
    /// above (with `grep`-like matching on the raw line), agree with it.
    /// Needs root, to mount tracefs, as the tests do in CI.
    #[test]
    fn the_running_kernel_agrees_with_an_independent_reading() {
        crate::targets::follow::ensure_tracefs().unwrap();
        let tracefs = Path::new(crate::targets::follow::TRACEFS);
        for field in FIELDS {
            let path = tracefs.join("events").join(field.event).join("format");
            let text = std::fs::read_to_string(&path).unwrap();
            let needle = format!(" {};", field.name);
            let array = format!(" {}[", field.name);
            let line = text
                .lines()
                .find(|l| l.contains(&needle) || l.contains(&array))
                .unwrap();
            let expected = format!("offset:{};\tsize:{};", field.offset, field.size);
            assert_eq!(
                line.contains(&expected),
                field_in_format(&text, field.name) == Some((field.offset, field.size)),
                "{line}"
            );
        }
    }
}
