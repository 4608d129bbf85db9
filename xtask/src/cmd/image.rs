//! `cargo xtask image`: an OCI image of the static agent (`Containerfile`,
//! `FROM scratch`), built with podman, buildah or a running docker, and
//! saved as an OCI archive beside the agent in `target/dist/`.
//!
//! The build context is `target/dist/image/` alone: a copy of the agent
//! with file capabilities (`setcap`), so that the image runs as a non-root
//! user. A non-root process loses the container's capabilities at exec
//! unless they are ambient, and neither Kubernetes nor podman 4 set ambient
//! capabilities; the file's permitted and effective bits give them back at
//! exec, limited by the container's bounding set (the capabilities the pod
//! adds). Measured here with podman and runc: `--user 65532 --cap-drop ALL
//! --cap-add BPF,PERFMON,SYS_PTRACE,SYS_ADMIN,DAC_READ_SEARCH` traces host
//! processes, also with `no-new-privileges`; without those capabilities the
//! exec itself fails (EPERM), as the kernel does for a file whose effective
//! capabilities cannot all be granted.
//!
//! `CAP_DAC_READ_SEARCH` is the one capability a non-root agent needs on
//! top of root's four: `/proc/PID/map_files` is mode 0500 and owned by the
//! process's user, and tracefs's root 0700, which uid 0 passes as their
//! owner and uid 65532 does not (measured: `EACCES` on a root CPython's
//! `map_files`, and `--all` finding no tracefs after mounting it).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use super::dist;
use crate::util::{ensure_debian_packages, is_root, output, run, step, workspace_root};

/// Environment variable naming the image when `--name` is not given.
pub const IMAGE_ENV: &str = "PAUSEWATCH_IMAGE";

/// Options of `cargo xtask image`.
#[derive(clap::Args)]
pub struct ImageArgs {
    /// Image name and tag, e.g. my-registry/pausewatch/agent:0.1.0 (default:
    /// $PAUSEWATCH_IMAGE, else localhost/pausewatch-agent:VERSION).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// A container engine that can build from a Containerfile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Daemonless; Debian's `podman`.
    Podman,
    /// Daemonless; builds only.
    Buildah,
    /// Needs its daemon running.
    Docker,
}

impl Engine {
    /// Its command name.
    pub fn command(self) -> &'static str {
        match self {
            Engine::Podman => "podman",
            Engine::Buildah => "buildah",
            Engine::Docker => "docker",
        }
    }
}

/// The image name: `--name`, else `$PAUSEWATCH_IMAGE`, else a local name
/// with the version (`localhost/` is podman's prefix for local images, so
/// nothing is ever pulled or pushed under it by mistake).
pub fn image_name(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var(IMAGE_ENV).ok())
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| format!("localhost/pausewatch-agent:{}", env!("CARGO_PKG_VERSION")))
}

/// The first engine that works here: podman, buildah, then docker if its
/// daemon answers. When there is none and this is Debian run as root,
/// installs podman (as the other xtask commands install what they need);
/// otherwise says what to install.
pub fn find_engine() -> Result<Engine> {
    if let Some(e) = working_engine() {
        return Ok(e);
    }
    let debian = Path::new("/usr/bin/apt-get").exists();
    if debian && is_root() {
        step("no container engine found: installing podman (with runc)");
        ensure_debian_packages(&["podman", "runc"])?;
        if let Some(e) = working_engine() {
            return Ok(e);
        }
        bail!("podman was installed but `podman version` fails");
    }
    bail!(
        "building the image needs a container engine, and none works here: install podman \
         (Debian/Ubuntu: `sudo apt-get install podman`; Fedora: `sudo dnf install podman`) or \
         buildah, or start the docker daemon{}",
        if debian {
            "; run this command as root and it installs podman itself"
        } else {
            ""
        }
    )
}

fn working_engine() -> Option<Engine> {
    let works = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works("podman", "version") {
        Some(Engine::Podman)
    } else if works("buildah", "version") {
        Some(Engine::Buildah)
    } else if works("docker", "info") {
        // `docker version` succeeds without a daemon; `info` needs it.
        Some(Engine::Docker)
    } else {
        None
    }
}

/// Runs `cargo xtask image`.
pub fn run_image(args: ImageArgs) -> Result<()> {
    let name = image_name(args.name);
    let engine = find_engine()?;
    let agent = dist::build_static()?;
    let archive = build_image(engine, &agent, &name)?;
    step(format!(
        "image {name} built with {}; OCI archive at {}",
        engine.command(),
        archive.display()
    ));
    eprintln!(
        "    run it:  {} run --rm --pid=host --read-only --cap-drop ALL \\\n\
         {:13}--cap-add BPF,PERFMON,SYS_PTRACE,SYS_ADMIN,DAC_READ_SEARCH {name} check",
        engine.command(),
        ""
    );
    Ok(())
}

/// Builds `name` from the repository's `Containerfile` with `agent` (which
/// must be `target/dist/agent`) and saves it as an OCI archive; returns the
/// archive's path.
pub fn build_image(engine: Engine, agent: &Path, name: &str) -> Result<PathBuf> {
    let dist = agent
        .parent()
        .context("the agent has no parent directory")?
        .to_path_buf();
    let context = dist.join("image");
    stage_with_capabilities(agent, &context)?;
    let containerfile = workspace_root().join("Containerfile");
    // The commit the agent itself reports: "agent 0.1.0 (git 0dba70c-dirty)".
    let version = output(Command::new(agent).arg("--version"))?;
    let revision = version
        .split("(git ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or("unknown")
        .to_string();
    step(format!(
        "building image {name} with {} (FROM scratch, the static agent)",
        engine.command()
    ));
    let mut build = Command::new(engine.command());
    match engine {
        Engine::Podman | Engine::Docker => build.arg("build"),
        Engine::Buildah => build.arg("bud"),
    };
    build
        .arg("--file")
        .arg(&containerfile)
        .arg("--tag")
        .arg(name)
        .arg("--build-arg")
        .arg(format!("VERSION={}", env!("CARGO_PKG_VERSION")))
        .arg("--build-arg")
        .arg(format!("REVISION={revision}"))
        .arg(&context);
    run(&mut build)?;

    let archive = dist.join("pausewatch-agent.oci.tar");
    let _ = std::fs::remove_file(&archive);
    step(format!("saving the image as {}", archive.display()));
    let mut save = Command::new(engine.command());
    match engine {
        Engine::Podman => save
            .args(["save", "--format", "oci-archive", "--output"])
            .arg(&archive)
            .arg(name),
        Engine::Buildah => save
            .arg("push")
            .arg(name)
            .arg(format!("oci-archive:{}", archive.display())),
        Engine::Docker => save.args(["save", "--output"]).arg(&archive).arg(name),
    };
    run(&mut save)?;
    Ok(archive)
}

/// The capabilities the agent needs as a non-root user (README,
/// "Privileges"), in `setcap`'s form: permitted and effective.
const FILE_CAPS: &str = "cap_bpf,cap_perfmon,cap_sys_ptrace,cap_sys_admin,cap_dac_read_search=ep";

/// Copies `agent` into `dir` (emptied first) and gives the copy
/// [`FILE_CAPS`]; `target/dist/agent` itself stays a plain file.
fn stage_with_capabilities(agent: &Path, dir: &Path) -> Result<()> {
    if !is_root() {
        bail!(
            "setting the image's file capabilities (setcap) needs root: run              `sudo -E cargo xtask image`"
        );
    }
    ensure_debian_packages(&["libcap2-bin"])?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let staged = dir.join("agent");
    std::fs::copy(agent, &staged)
        .with_context(|| format!("copying {} to {}", agent.display(), staged.display()))?;
    step(format!(
        "setcap {FILE_CAPS} on the image's copy of the agent"
    ));
    run(Command::new("setcap").arg(FILE_CAPS).arg(&staged))
        .context("setcap failed (libcap2-bin; the file system must keep security xattrs)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_and_the_default_is_local() {
        assert_eq!(image_name(Some("r/p:1".into())), "r/p:1");
        if std::env::var_os(IMAGE_ENV).is_none() {
            assert_eq!(
                image_name(None),
                format!("localhost/pausewatch-agent:{}", env!("CARGO_PKG_VERSION"))
            );
        }
    }
}
