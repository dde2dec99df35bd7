//! `pip install` on the warm engine: read requirements, check whether the environment already
//! satisfies them, otherwise resolve, plan, prepare, uninstall and link, then update the view
//! from the changelog.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;
use tokio::runtime::Runtime;
use uv_cache::Refresh;
use uv_client::{FlatIndexClient, RegistryClient, RegistryClientBuilder};
use uv_configuration::{
    BuildOptions, Constraints, Excludes, HashCheckingMode, IndexStrategy, NoBinary, NoBuild,
    NoSources, Overrides, PackageNameSpecifier, Reinstall, Upgrade,
};
use uv_dispatch::{BuildDispatch, SharedState};
use uv_distribution::DistributionDatabase;
use uv_distribution_types::{
    CachedDist, ConfigSettings, DependencyMetadata, DistributionMetadata, ExtraBuildRequires,
    ExtraBuildVariables, Index, IndexLocations, IndexUrl, InstalledDist, Name,
    PackageConfigSettings, Resolution, UnresolvedRequirement,
};
use uv_install_wheel::LinkMode;
use uv_installer::{InstallationStrategy, Plan, Planner, Preparer, SatisfiesResult, SitePackages};
use uv_preview::Preview;
use uv_pypi_types::Conflicts;
use uv_requirements::{
    LookaheadResolver, NamedRequirementsResolver, RequirementsSource, RequirementsSpecification,
};
use uv_requirements_txt::RequirementsTxtRequirement;
use uv_resolver::{
    DependencyMode, ExcludeNewer, Exclusions, FlatIndex, Manifest, OptionsBuilder, Preferences,
    Prerelease, PythonRequirement, Resolver, ResolverEnvironment, UpgradePackages,
};
use uv_types::{BuildIsolation, HashStrategy, SourceTreeEditablePolicy};
use uv_workspace::WorkspaceCache;

use crate::command::InstallArgs;
use crate::engine::{EnvKey, Shared};
use crate::environment::EnvState;
use crate::error::{ErrorKind, FfiError, Result};
use crate::index::{IndexPages, KeptIndexes};
use crate::profile::Profile;

/// The outcome of one `pip install`.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReply {
    pub exit_code: i32,
    /// `(name, version)` pairs, PEP 503-normalised names, sorted.
    pub installed: Vec<(String, String)>,
    pub removed: Vec<(String, String)>,
    /// `""` on success (the field exists for the upstream tuple API).
    pub error: String,
    /// The prefix of the environment acted on (null for commands that name none), and the
    /// `--target` folder if any.
    pub environment: Option<PathBuf>,
    pub target: Option<PathBuf>,
    /// True if the environment already satisfied the request and nothing was touched.
    pub satisfied: bool,
    pub dry_run: bool,
    /// Microseconds spent in each phase.
    pub timings_us: Vec<(&'static str, u64)>,
    /// `"warm"`: the engine ran it; `"uv"`: uv's own command line ran it in this process;
    /// `"printed"`: uv's parser answered (`--help`, `--version`).
    pub engine: &'static str,
    /// What the command printed (uv's command line and parser only; the warm engine prints
    /// nothing).
    pub stdout: String,
    pub stderr: String,
    /// True when the call failed on index pages kept from earlier calls and succeeded when
    /// retried with fresh ones.
    pub index_retried: bool,
}

impl InstallReply {
    /// The reply of a warm call.
    pub fn warm(
        key: &EnvKey,
        installed: Vec<(String, String)>,
        removed: Vec<(String, String)>,
        satisfied: bool,
        dry_run: bool,
        profile: Profile,
    ) -> Self {
        Self {
            exit_code: 0,
            installed,
            removed,
            error: String::new(),
            environment: Some(key.root.clone()),
            target: key.target.clone(),
            satisfied,
            dry_run,
            timings_us: profile.finish(),
            engine: "warm",
            stdout: String::new(),
            stderr: String::new(),
            index_retried: false,
        }
    }

    /// The reply when uv's parser answered without running anything.
    pub fn printed(printed: crate::capture::Printed, exit_code: i32, profile: Profile) -> Self {
        Self {
            exit_code,
            installed: Vec::new(),
            removed: Vec::new(),
            error: String::new(),
            environment: None,
            target: None,
            satisfied: false,
            dry_run: false,
            timings_us: profile.finish(),
            engine: "printed",
            stdout: printed.stdout,
            stderr: printed.stderr,
            index_retried: false,
        }
    }
}

/// What the caller asked of the policy for this call.
#[derive(Debug, Clone, Copy)]
pub struct CallPolicy {
    /// Compare the environment's fingerprint with the disk before trusting the view.
    pub check: bool,
    /// Rescan and retry once if an install meets a view that disagrees with the disk.
    pub heal: bool,
    /// Revalidate every index page this call reads (after `index_clear`, or on a retry).
    pub refresh_index: bool,
    /// Do not use index pages kept from earlier calls.
    pub fresh_index: bool,
    /// How long kept index pages may be used.
    pub index_ttl: std::time::Duration,
}

/// What one warm call is about: its request, and what the engine chose for it.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    pub shared: &'a Shared,
    pub key: &'a EnvKey,
    pub runtime: &'a Runtime,
    pub args: &'a InstallArgs,
    /// The request's identity for the "already satisfied" memo.
    pub command: &'a str,
    pub cwd: &'a Path,
    pub policy: CallPolicy,
}

pub fn run(
    call: Call<'_>,
    indexes: &mut KeptIndexes,
    state: &mut EnvState,
    mut profile: Profile,
) -> Result<InstallReply> {
    let Call {
        key,
        runtime,
        args,
        command,
        cwd,
        policy,
        ..
    } = call;
    if let Some(reply) = already_satisfied(state, key, args, command, cwd, policy, &mut profile) {
        return Ok(reply);
    }
    let memo = memo_key(args, command, cwd);
    let outcome = runtime.block_on(install(call, indexes, state, memo.clone(), &mut profile));
    let outcome = match outcome {
        Err(err) if policy.heal && err.kind == ErrorKind::Install && state.check() => {
            // The environment changed under us (another tool): rescan and try once more.
            state.counters.heals += 1;
            runtime.block_on(install(call, indexes, state, memo, &mut profile))
        }
        other => other,
    };
    let Changes {
        installed,
        removed,
        satisfied,
    } = outcome?;
    Ok(reply(key, args, installed, removed, satisfied, profile))
}

/// The fast answer, on the caller's thread: the same request was already found satisfied and
/// the environment has not changed since (checked first, unless the policy trusts the view).
pub fn already_satisfied(
    state: &mut EnvState,
    key: &EnvKey,
    args: &InstallArgs,
    command: &str,
    cwd: &Path,
    policy: CallPolicy,
    profile: &mut Profile,
) -> Option<InstallReply> {
    if policy.check {
        state.check();
        profile.mark("check");
    }
    let memo = memo_key(args, command, cwd)?;
    if !state.is_known_satisfied(&memo) {
        return None;
    }
    profile.mark("satisfied");
    Some(reply(
        key,
        args,
        Vec::new(),
        Vec::new(),
        true,
        profile.clone(),
    ))
}

fn reply(
    key: &EnvKey,
    args: &InstallArgs,
    installed: Vec<(String, String)>,
    removed: Vec<(String, String)>,
    satisfied: bool,
    profile: Profile,
) -> InstallReply {
    InstallReply::warm(key, installed, removed, satisfied, args.dry_run, profile)
}

/// A request whose answer depends only on the environment can be remembered as satisfied until
/// the environment changes. Requirement files may change on disk, so those are never remembered.
/// The command's text (with the directory relative paths are resolved in) identifies the request.
fn memo_key(args: &InstallArgs, command: &str, cwd: &Path) -> Option<String> {
    if !args.requirements.is_empty() || !args.constraints.is_empty() || args.changes_anyway() {
        return None;
    }
    let cwd = cwd.as_os_str().to_string_lossy();
    let mut key = String::with_capacity(cwd.len() + command.len() + 1);
    key.push_str(&cwd);
    key.push('\0');
    key.push_str(command);
    Some(key)
}

struct Changes {
    installed: Vec<(String, String)>,
    removed: Vec<(String, String)>,
    satisfied: bool,
}

impl Changes {
    fn none(satisfied: bool) -> Self {
        Self {
            installed: Vec::new(),
            removed: Vec::new(),
            satisfied,
        }
    }
}

async fn install(
    call: Call<'_>,
    indexes: &mut KeptIndexes,
    state: &mut EnvState,
    memo: Option<String>,
    profile: &mut Profile,
) -> Result<Changes> {
    let Call {
        shared,
        args,
        cwd,
        policy,
        ..
    } = call;
    // Requirements: arguments, `-r` files and `-c` files, read by uv's own reader.
    let mut sources = Vec::new();
    for package in &args.packages {
        sources.push(RequirementsSource::Package(parse_argument(package, cwd)?));
    }
    sources.extend(file_sources(
        &args.requirements,
        cwd,
        RequirementsSource::from_requirements_file,
    )?);
    let constraints = file_sources(
        &args.constraints,
        cwd,
        RequirementsSource::from_constraints_txt,
    )?;
    let spec = read_specification(shared, &sources, &constraints).await?;
    if !spec.source_trees.is_empty() || spec.pylock.is_some() || !spec.groups.is_empty() {
        // Project files as requirement sources: uv's own command line reads them.
        return Err(FfiError::new(ErrorKind::DeferToUv, "project files"));
    }
    profile.mark("requirements");

    // A cheap handle (an `Arc`) to borrow the interpreter and its tags from, while `state` changes.
    let env = state.env.clone();
    let interpreter = env.interpreter();
    if !args.break_system_packages {
        check_externally_managed(&state.env)?;
    }
    // The environment's lock (uv's, shared with its CLI), held for the rest of the call as uv
    // holds it: from before the environment is read until its files have changed.
    let _lock = state.env.lock().await.ok();

    let reinstall = reinstall_of(args)?;
    let upgrade = upgrade_of(args)?;

    // The fast answer: does the environment already satisfy the request?
    let markers = state.markers.clone();
    let tags = state.tags().clone();
    let config_settings = ConfigSettings::default();
    let config_settings_package = PackageConfigSettings::default();
    let extra_build_requires = ExtraBuildRequires::default();
    let extra_build_variables = ExtraBuildVariables::default();
    if reinstall.is_none() && upgrade.is_none() {
        let site = state.site_packages()?;
        profile.mark("site-packages");
        let satisfied = site
            .satisfies_spec(
                &spec.requirements,
                &spec.constraints,
                &spec.overrides,
                &spec.override_dependencies,
                &spec.excludes,
                InstallationStrategy::Permissive,
                &markers,
                &tags,
                &config_settings,
                &config_settings_package,
                &extra_build_requires,
                &extra_build_variables,
            )
            .map_err(|err| FfiError::from_anyhow(ErrorKind::Install, &err))?;
        profile.mark("satisfied-check");
        if let SatisfiesResult::Fresh { .. } = satisfied {
            if let Some(memo) = memo {
                state.remember_satisfied(memo);
            }
            return Ok(Changes::none(true));
        }
    }

    // Resolution and installation see this exact snapshot (the planner insists on it).
    let site: SitePackages = state.site_packages()?.clone();
    let link_mode = link_mode(args)?;
    let hash_mode = HashCheckingMode::from_requirements_txt(None, spec.require_hashes);
    let hasher = match hash_mode {
        Some(mode) => HashStrategy::from_requirements(
            spec.requirements
                .iter()
                .map(|entry| (&entry.requirement, entry.hashes.as_slice())),
            spec.constraints
                .iter()
                .map(|entry| (&entry.requirement, entry.hashes.as_slice())),
            Some(&markers),
            mode,
        )
        .map_err(|err| FfiError::from_uv(ErrorKind::InvalidRequirement, &err))?,
        None => HashStrategy::None,
    };
    let index_locations = index_locations(args, &spec, cwd)?;
    let build_options =
        build_options_of(args)?.combine(spec.no_binary.clone(), spec.no_build.clone());
    let refresh = policy.refresh_index || policy.fresh_index;
    let cache = if refresh {
        shared
            .cache
            .clone()
            .with_refresh(Refresh::from_args(Some(true), Vec::new()))
    } else if reinstall.is_none() && upgrade.is_none() {
        shared.cache.clone()
    } else {
        shared
            .cache
            .clone()
            .with_refresh(Refresh::from(reinstall.clone()).combine(Refresh::from(upgrade.clone())))
    };

    // Index pages: kept from an earlier call when allowed, otherwise read fresh.
    let index_strategy: IndexStrategy =
        value_of("--index-strategy", args.index_strategy.as_deref())?;
    let index_key = format!(
        "{}|{:?}|{:?}|{:?}|{}",
        interpreter.sys_executable().display(),
        index_locations,
        build_options,
        index_strategy,
        cache.root().display(),
    );
    let may_reuse = !refresh && reinstall.is_none() && upgrade.is_none() && !policy.fresh_index;
    let kept = if may_reuse {
        indexes.get(&index_key, policy.index_ttl)
    } else {
        None
    };
    let reused = kept.is_some();
    let pages = match kept {
        Some(pages) => pages,
        None => {
            indexes.counters.fresh += 1;
            let client = RegistryClientBuilder::new(shared.client_builder.clone(), cache.clone())
                .index_locations(index_locations.clone())
                .index_strategy(index_strategy)
                .markers(interpreter.markers())
                .platform(interpreter.platform())
                .wrap_existing(&shared.base_client)
                .map_err(|err| FfiError::from_uv(ErrorKind::Index, &err))?;
            let flat_index = flat_index(
                &client,
                &cache,
                &index_locations,
                &tags,
                &hasher,
                &build_options,
            )
            .await?;
            IndexPages::new(client, flat_index, SharedState::default())
        }
    };
    profile.mark(if reused { "index-kept" } else { "index-fresh" });

    // Everything from here on may fail because of what the kept pages say: see below.
    let outcome: Result<Changes> = async {
        let client = &pages.client;
        let flat_index = &pages.flat_index;
        let state_shared = pages.state.clone();
        let build_constraints = Constraints::default();
        let dependency_metadata = DependencyMetadata::default();
        let build_hasher = HashStrategy::None;
        let build_dispatch = BuildDispatch::new(
            client,
            &cache,
            &build_constraints,
            interpreter,
            &index_locations,
            flat_index,
            &dependency_metadata,
            state_shared.clone(),
            index_strategy,
            &config_settings,
            &config_settings_package,
            BuildIsolation::Isolated,
            &extra_build_requires,
            &extra_build_variables,
            link_mode,
            &build_options,
            &build_hasher,
            ExcludeNewer::default(),
            NoSources::default(),
            SourceTreeEditablePolicy::Project,
            WorkspaceCache::default(),
            shared.concurrency.clone(),
            Preview::default(),
        );
        let database = || {
            DistributionDatabase::new(
                client,
                &build_dispatch,
                shared.concurrency.downloads_semaphore.clone(),
            )
        };

        // Resolve.
        let (mut requirements, unnamed): (Vec<_>, Vec<_>) = spec.requirements.into_iter().fold(
            (Vec::new(), Vec::new()),
            |(mut named, mut unnamed), entry| {
                match entry.requirement {
                    UnresolvedRequirement::Named(requirement) => named.push(requirement),
                    UnresolvedRequirement::Unnamed(requirement) => unnamed.push(requirement),
                }
                (named, unnamed)
            },
        );
        if !unnamed.is_empty() {
            let named = NamedRequirementsResolver::new(&hasher, state_shared.index(), database())
                .resolve(unnamed.into_iter())
                .await
                .map_err(|err| FfiError::from_uv(ErrorKind::Resolution, &err))?;
            requirements.extend(named);
        }
        let constraints = Constraints::from_requirements(
            spec.constraints
                .into_iter()
                .map(|constraint| constraint.requirement)
                .chain(upgrade.constraints().cloned()),
        );
        let overrides = Overrides::default();
        let excludes = Excludes::default();
        let resolver_env = ResolverEnvironment::specific(markers.clone());
        let dependency_mode = if args.no_deps {
            DependencyMode::Direct
        } else {
            DependencyMode::Transitive
        };
        let (lookaheads, hasher) = match dependency_mode {
            DependencyMode::Transitive => LookaheadResolver::new(
                &requirements,
                &constraints,
                &overrides,
                &excludes,
                &hasher,
                state_shared.index(),
                database(),
            )
            .resolve(&resolver_env)
            .await
            .map_err(|err| FfiError::from_uv(ErrorKind::Resolution, &err))?,
            DependencyMode::Direct => (Vec::new(), hasher),
        };
        let manifest = Manifest::new(
            requirements,
            constraints,
            overrides,
            excludes,
            Preferences::default(),
            None,
            BTreeSet::default(),
            Exclusions::new(
                reinstall.clone(),
                UpgradePackages::for_non_project(&upgrade),
            ),
            lookaheads,
        );
        let options = OptionsBuilder::new()
            .resolution_mode(value_of("--resolution", args.resolution.as_deref())?)
            .index_strategy(index_strategy)
            .prerelease(prerelease(args)?)
            .dependency_mode(dependency_mode)
            .build_options(build_options.clone())
            .build();
        let python_requirement = PythonRequirement::from_interpreter(interpreter);
        let resolver = Resolver::new(
            manifest,
            options,
            &python_requirement,
            resolver_env,
            interpreter.markers(),
            Conflicts::empty(),
            Some(&tags),
            flat_index,
            state_shared.index(),
            &hasher,
            &build_dispatch,
            site.clone(),
            database(),
        )
        .map_err(|err| FfiError::from_uv(ErrorKind::Resolution, &err))?;
        let output = resolver.resolve().await.map_err(|err| {
            let kind = match &err {
                uv_resolver::ResolveError::Client(_) => ErrorKind::Index,
                _ => ErrorKind::Resolution,
            };
            FfiError::from_uv(kind, &err)
        })?;
        let resolution = Resolution::from(output);
        profile.mark("resolve");

        // Plan against the very snapshot the resolver saw (the planner insists on it).
        let plan = Planner::new(&resolution)
            .build(
                site,
                InstallationStrategy::Permissive,
                &reinstall,
                &build_options,
                &hasher,
                &index_locations,
                &config_settings,
                &config_settings_package,
                &extra_build_requires,
                &extra_build_variables,
                &cache,
                &state.env,
                &tags,
            )
            .map_err(|err| FfiError::from_anyhow(ErrorKind::Install, &err))?;
        profile.mark("plan");
        let Plan {
            cached,
            remote,
            reinstalls,
            extraneous: _,
        } = plan;

        if args.dry_run {
            let mut installed: Vec<(String, String)> = remote
                .iter()
                .map(|dist| (dist.name().to_string(), dist.version_or_url().to_string()))
                .chain(cached.iter().map(cached_pair))
                .collect();
            let mut removed: Vec<(String, String)> =
                reinstalls.iter().map(installed_pair).collect();
            for pair in installed.iter_mut() {
                pair.1 = pair.1.trim_start_matches("==").to_string();
            }
            installed.sort();
            removed.sort();
            return Ok(Changes {
                installed,
                removed,
                satisfied: false,
            });
        }
        if remote.is_empty() && cached.is_empty() && reinstalls.is_empty() {
            if let Some(memo) = memo {
                state.remember_satisfied(memo);
            }
            return Ok(Changes::none(true));
        }

        let wheels = if remote.is_empty() {
            Vec::new()
        } else {
            Preparer::new(&cache, &tags, &hasher, &build_options, database())
                .prepare(remote, state_shared.in_flight(), &resolution)
                .await
                .map_err(|err| FfiError::from_uv(ErrorKind::Install, &err))?
        };
        profile.mark("prepare");

        let layout = interpreter.layout();
        let mut removed_dists: Vec<InstalledDist> = Vec::new();
        for dist in reinstalls {
            match uv_installer::uninstall(&dist, &layout).await {
                Ok(_) => {}
                // Like uv: a missing RECORD leaves files behind but must not stop the install.
                Err(uv_installer::UninstallError::Uninstall(
                    uv_install_wheel::Error::MissingRecord(_)
                    | uv_install_wheel::Error::MissingTopLevel(_),
                )) => {}
                Err(err) => {
                    // Whatever was removed so far is gone from disk: keep the view honest.
                    let removed: Vec<_> = removed_dists.iter().map(installed_pair).collect();
                    state.apply_delta(&[], &removed);
                    return Err(FfiError::from_uv(ErrorKind::Install, &err));
                }
            }
            removed_dists.push(dist);
        }
        profile.mark("uninstall");

        let to_install: Vec<CachedDist> = wheels.into_iter().chain(cached).collect();
        let installed_dists = if to_install.is_empty() {
            Vec::new()
        } else {
            // On the engine's own rayon pool: rayon's global pool does not survive a fork.
            let installer = uv_installer::Installer::new(&state.env, Preview::default())
                .with_link_mode(link_mode)
                .with_cache(&cache)
                .with_installer_metadata(true);
            let outcome = shared
                .pool
                .install(|| installer.install_blocking(to_install));
            match outcome {
                Ok(dists) => dists,
                Err(err) => {
                    // Partial installs are possible: forget the view so the next call rescans.
                    state.invalidate();
                    return Err(FfiError::from_anyhow(ErrorKind::Install, &err));
                }
            }
        };
        profile.mark("install");

        let mut installed: Vec<(String, String)> =
            installed_dists.iter().map(cached_pair).collect();
        let mut removed: Vec<(String, String)> = removed_dists.iter().map(installed_pair).collect();
        installed.sort();
        removed.sort();
        state.apply_delta(&installed, &removed);
        profile.mark("changelog");
        Ok(Changes {
            installed,
            removed,
            satisfied: false,
        })
    }
    .await;
    match outcome {
        Ok(changes) => {
            if !reused {
                indexes.keep(index_key, pages);
            }
            Ok(changes)
        }
        Err(mut err) => {
            indexes.drop_after_failure(&index_key);
            if reused
                && !matches!(
                    err.kind,
                    ErrorKind::InvalidCommand | ErrorKind::InvalidRequirement
                )
            {
                err.retry = Some("fresh_index");
            }
            Err(err)
        }
    }
}

fn cached_pair(dist: &CachedDist) -> (String, String) {
    (dist.name().to_string(), dist.filename().version.to_string())
}

/// `-r` / `-c` files (relative to `cwd`) as uv's requirement sources.
pub fn file_sources(
    files: &[String],
    cwd: &Path,
    source: fn(PathBuf) -> anyhow::Result<RequirementsSource>,
) -> Result<Vec<RequirementsSource>> {
    files
        .iter()
        .map(|file| source(cwd.join(file)))
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(|err| FfiError::from_anyhow(ErrorKind::InvalidRequirement, &err))
}

/// Read requirement and constraint sources with uv's own reader.
pub async fn read_specification(
    shared: &Shared,
    sources: &[RequirementsSource],
    constraints: &[RequirementsSource],
) -> Result<RequirementsSpecification> {
    RequirementsSpecification::from_sources(
        sources,
        constraints,
        &[],
        &[],
        None,
        &shared.client_builder,
    )
    .await
    .map_err(|err| FfiError::from_anyhow(ErrorKind::InvalidRequirement, &err))
}

/// One requirement given on the command line (a specifier, URL or path), relative to `cwd`.
pub fn parse_argument(package: &str, cwd: &Path) -> Result<RequirementsTxtRequirement> {
    RequirementsTxtRequirement::parse(package, cwd, false).map_err(|err| {
        FfiError::new(
            ErrorKind::InvalidRequirement,
            format!("Failed to parse: `{package}`\n  Caused by: {err}"),
        )
    })
}

/// Refuse to change an environment that is externally managed (PEP 668).
pub fn check_externally_managed(env: &uv_python::PythonEnvironment) -> Result<()> {
    let Some(managed) = env.interpreter().is_externally_managed() else {
        return Ok(());
    };
    let detail = managed.into_error().unwrap_or_default();
    let mut err = FfiError::new(
        ErrorKind::ExternallyManaged,
        format!(
            "The interpreter at {} is externally managed and cannot be modified{}{}",
            env.root().display(),
            if detail.is_empty() { "" } else { ":\n\n" },
            detail
        ),
    );
    err.hints.push(
        "pass `--break-system-packages` to change it anyway, or use a virtual environment"
            .to_string(),
    );
    Err(err)
}

pub fn installed_pair(dist: &InstalledDist) -> (String, String) {
    (dist.name().to_string(), dist.version().to_string())
}

/// `--link-mode`, else `UV_LINK_MODE`, else uv's own default.
fn link_mode(args: &InstallArgs) -> Result<LinkMode> {
    let text = args
        .link_mode
        .clone()
        .or_else(|| std::env::var("UV_LINK_MODE").ok().filter(|v| !v.is_empty()));
    value_of("--link-mode", text.as_deref())
}

fn prerelease(args: &InstallArgs) -> Result<Prerelease> {
    Ok(Prerelease {
        global: value_of("--prerelease", args.prerelease.as_deref())?,
        ..Prerelease::default()
    })
}

/// A value of one of uv's enumerated options, read with uv's own spelling rules (clap's
/// `ValueEnum`, aliases included); the default when absent.
fn value_of<T: clap::ValueEnum + Default>(option: &str, text: Option<&str>) -> Result<T> {
    match text {
        None => Ok(T::default()),
        Some(text) => T::from_str(text, false).map_err(|err| {
            FfiError::new(
                ErrorKind::InvalidCommand,
                format!("error: invalid value '{text}' for '{option}': {err}"),
            )
        }),
    }
}

/// `--reinstall` and `--reinstall-package`.
fn reinstall_of(args: &InstallArgs) -> Result<Reinstall> {
    let packages = names(&args.reinstall_packages)?;
    Ok(Reinstall::from_args(args.reinstall.then_some(true), packages).unwrap_or_default())
}

/// `--upgrade` and `--upgrade-package` (whose requirements also constrain the upgrade).
fn upgrade_of(args: &InstallArgs) -> Result<Upgrade> {
    let packages = args
        .upgrade_packages
        .iter()
        .map(|text| {
            uv_pep508::Requirement::<uv_pypi_types::VerbatimParsedUrl>::from_str(text)
                .map(uv_distribution_types::Requirement::from)
                .map_err(|err| {
                    FfiError::new(
                        ErrorKind::InvalidRequirement,
                        format!("Failed to parse: `{text}`\n  Caused by: {err}"),
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Upgrade::from_args(args.upgrade.then_some(true), packages, Vec::new()).unwrap_or_default())
}

/// `--only-binary`, `--no-binary` and `--no-build`, with pip's meaning.
fn build_options_of(args: &InstallArgs) -> Result<BuildOptions> {
    let specifiers = |values: &[String]| {
        values
            .iter()
            .map(|text| {
                PackageNameSpecifier::from_str(text).map_err(|err| {
                    FfiError::new(
                        ErrorKind::InvalidCommand,
                        format!("Invalid package name `{text}`: {err}"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()
    };
    Ok(BuildOptions::new(
        NoBinary::from_pip_args(specifiers(&args.no_binary)?),
        NoBuild::from_pip_args(specifiers(&args.only_binary)?, args.no_build),
    ))
}

fn names(values: &[String]) -> Result<Vec<uv_normalize::PackageName>> {
    values
        .iter()
        .map(|text| {
            uv_normalize::PackageName::from_str(text).map_err(|err| {
                FfiError::new(
                    ErrorKind::InvalidRequirement,
                    format!("Invalid package name `{text}`: {err}"),
                )
            })
        })
        .collect()
}

/// Index locations as uv orders them: extra indexes first, then the default index, then any
/// given inside requirement files; `--find-links` locations are flat indexes.
fn index_locations(
    args: &InstallArgs,
    spec: &RequirementsSpecification,
    cwd: &Path,
) -> Result<IndexLocations> {
    let parse = |text: &str| {
        IndexUrl::parse(text, Some(cwd)).map_err(|err| {
            FfiError::new(
                ErrorKind::InvalidCommand,
                format!("Invalid index location `{text}`: {err}"),
            )
        })
    };
    let mut indexes = Vec::new();
    for url in &args.extra_index_urls {
        indexes.push(Index::from_extra_index_url(parse(url)?));
    }
    if let Some(url) = &args.index_url {
        indexes.push(Index::from_index_url(parse(url)?));
    }
    let mut flat = Vec::new();
    for url in &args.find_links {
        flat.push(Index::from_find_links(parse(url)?));
    }
    let from_files: Vec<Index> = spec
        .extra_index_urls
        .iter()
        .cloned()
        .map(Index::from_extra_index_url)
        .chain(spec.index_url.clone().map(Index::from_index_url))
        .collect();
    let flat_from_files: Vec<Index> = spec
        .find_links
        .iter()
        .cloned()
        .map(Index::from_find_links)
        .collect();
    Ok(IndexLocations::new(indexes, flat, args.no_index).combine(
        from_files,
        flat_from_files,
        spec.no_index,
    ))
}

async fn flat_index(
    client: &RegistryClient,
    cache: &uv_cache::Cache,
    locations: &IndexLocations,
    tags: &uv_platform_tags::Tags,
    hasher: &HashStrategy,
    build_options: &BuildOptions,
) -> Result<FlatIndex> {
    if locations.flat_indexes().next().is_none() {
        return Ok(FlatIndex::default());
    }
    let entries = FlatIndexClient::new(client.cached_client(), client.connectivity(), cache)
        .fetch_all(locations.flat_indexes().map(Index::url))
        .await
        .map_err(|err| FfiError::from_uv(ErrorKind::Index, &err))?;
    Ok(FlatIndex::from_entries(
        entries,
        Some(tags),
        hasher,
        build_options,
    ))
}

/// Where relative paths in a request are resolved.
pub fn request_cwd(cwd: Option<&str>) -> Result<PathBuf> {
    match cwd {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => crate::engine::current_dir(),
    }
}
