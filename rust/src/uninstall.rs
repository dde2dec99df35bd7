//! `pip uninstall` on the warm engine: remove the named distributions and update the view from
//! what was removed. Names that are not installed are skipped, as uv and pip do.

use std::path::Path;

use uv_distribution_types::{InstalledDist, UnresolvedRequirement};
use uv_normalize::PackageName;
use uv_requirements::RequirementsSource;
use uv_requirements_txt::RequirementsTxtRequirement;

use crate::command::InstallArgs;
use crate::engine::Shared;
use crate::environment::EnvState;
use crate::error::{ErrorKind, FfiError, Result};
use crate::install::{
    Call, InstallReply, check_externally_managed, file_sources, installed_pair, lock_environment,
    parse_argument, read_specification,
};
use crate::plan::{PlanStep, removal_entries};
use crate::profile::Profile;
use crate::progress;

pub fn run(call: Call<'_>, state: &mut EnvState, mut profile: Profile) -> Result<InstallReply> {
    let Call {
        shared,
        key,
        runtime,
        args,
        cwd,
        policy,
        ..
    } = call;
    if policy.check {
        state.check();
        profile.mark("check");
    }
    let names = runtime.block_on(read_names(shared, args, cwd))?;
    profile.mark("requirements");
    if !args.break_system_packages {
        check_externally_managed(&state.env)?;
    }
    // uv's environment lock, held from before the environment is read until files are gone.
    // A call that only reports its plan changes nothing, so it leaves no lock file behind.
    let env = state.env.clone();
    let reporting = matches!(call.step, PlanStep::Report);
    let _lock = (!reporting)
        .then(|| runtime.block_on(lock_environment(key, &env)))
        .flatten();
    let site = state.site_packages()?;
    let mut targets: Vec<InstalledDist> = Vec::new();
    for name in &names {
        targets.extend(site.get_packages(name).into_iter().cloned());
    }
    profile.mark("site-packages");
    let removed = if !args.dry_run && !reporting && !targets.is_empty() {
        progress::stop_point("nothing was changed")?;
        let removed = runtime.block_on(remove(env.interpreter(), &targets, state))?;
        state.apply_delta(&[], &removed);
        removed
    } else {
        let mut removed: Vec<(String, String)> = targets.iter().map(installed_pair).collect();
        removed.sort();
        removed
    };
    profile.mark("uninstall");
    if reporting {
        // The host decides; nothing was removed.
        let mut reply =
            InstallReply::warm(key, Vec::new(), Vec::new(), false, args.dry_run, profile);
        reply.plan = Some(removal_entries(&removed));
        return Ok(reply);
    }
    Ok(InstallReply::warm(
        key,
        Vec::new(),
        removed,
        false,
        args.dry_run,
        profile,
    ))
}

/// Remove installed distributions, as uv does, reporting each to a recording call. Returns what
/// was removed, sorted. A failure applies what was removed before it to the view, so the view
/// stays true to what is gone; a distribution without a RECORD is removed as far as uv can (its
/// files stay behind, as with uv) and the view is read from the disk again.
pub async fn remove(
    interpreter: &uv_python::Interpreter,
    dists: &[InstalledDist],
    state: &mut EnvState,
) -> Result<Vec<(String, String)>> {
    if dists.is_empty() {
        return Ok(Vec::new());
    }
    progress::emit(progress::Event::Phase {
        phase: "uninstall",
        total: dists.len(),
    });
    let layout = interpreter.layout();
    let mut removed: Vec<(String, String)> = Vec::new();
    for dist in dists {
        match uv_installer::uninstall(dist, &layout).await {
            Ok(_) => {
                let (name, version) = installed_pair(dist);
                progress::emit(progress::Event::Uninstalled {
                    name: name.clone(),
                    version: version.clone(),
                });
                removed.push((name, version));
            }
            Err(uv_installer::UninstallError::Uninstall(
                uv_install_wheel::Error::MissingRecord(_)
                | uv_install_wheel::Error::MissingTopLevel(_),
            )) => {
                removed.push(installed_pair(dist));
                state.invalidate();
            }
            Err(err) => {
                state.apply_delta(&[], &removed);
                return Err(FfiError::from_uv(ErrorKind::Install, &err));
            }
        }
    }
    removed.sort();
    Ok(removed)
}

/// The package names to remove, from the arguments and any `-r` files.
async fn read_names(shared: &Shared, args: &InstallArgs, cwd: &Path) -> Result<Vec<PackageName>> {
    let mut names = Vec::new();
    for package in &args.packages {
        match parse_argument(package, cwd)? {
            RequirementsTxtRequirement::Named(requirement) => names.push(requirement.name),
            // A path or URL: uv's own command line decides what it means here.
            RequirementsTxtRequirement::Unnamed(_) => {
                return Err(FfiError::new(ErrorKind::DeferToUv, "unnamed requirement"));
            }
        }
    }
    if !args.requirements.is_empty() {
        let sources = file_sources(
            &args.requirements,
            cwd,
            RequirementsSource::from_requirements_file,
        )?;
        let spec = read_specification(shared, &sources, &[]).await?;
        for entry in spec.requirements {
            match entry.requirement {
                UnresolvedRequirement::Named(requirement) => names.push(requirement.name),
                UnresolvedRequirement::Unnamed(_) => {
                    return Err(FfiError::new(ErrorKind::DeferToUv, "unnamed requirement"));
                }
            }
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}
