//! The stages of a warm `pip install`, in the order `install::install` runs them: read the
//! requirements, check whether the environment already satisfies them, decide the settings,
//! find the index pages, resolve, plan, then apply the plan (prepare, uninstall, link) and
//! report the changelog. Each stage takes what the earlier ones produced.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use uv_cache::{Cache, Refresh};
use uv_client::{FlatIndexClient, RegistryClient, RegistryClientBuilder};
use uv_configuration::{
    BuildOptions, Constraints, Excludes, HashCheckingMode, IndexStrategy, NoSources, Overrides,
    Reinstall, Upgrade,
};
use uv_dispatch::{BuildDispatch, SharedState};
use uv_distribution::DistributionDatabase;
use uv_distribution_types::{
    CachedDist, ConfigSettings, DependencyMetadata, DistributionMetadata, ExtraBuildRequires,
    ExtraBuildVariables, Index, IndexLocations, InstalledDist, Name, PackageConfigSettings,
    Resolution, UnresolvedRequirement,
};
use uv_install_wheel::LinkMode;
use uv_installer::{InstallationStrategy, Plan, Planner, Preparer, SatisfiesResult, SitePackages};
use uv_platform_tags::Tags;
use uv_preview::Preview;
use uv_pypi_types::Conflicts;
use uv_python::Interpreter;
use uv_requirements::{
    LookaheadResolver, NamedRequirementsResolver, RequirementsSource, RequirementsSpecification,
};
use uv_resolver::{
    DependencyMode, ExcludeNewer, Exclusions, FlatIndex, Manifest, OptionsBuilder, Preferences,
    PythonRequirement, Resolver, ResolverEnvironment, UpgradePackages,
};
use uv_types::{BuildIsolation, HashStrategy, SourceTreeEditablePolicy};
use uv_workspace::WorkspaceCache;

use crate::environment::EnvState;
use crate::error::{ErrorKind, FfiError, Result};
use crate::index::{IndexPages, KeptIndexes};
use crate::install::{self, Call, Pair};
use crate::progress;
use crate::relink::Relink;
use crate::staging::Staging;
use crate::stash::{Found, Installed, Stamps, Stash, WheelKey};

/// Read the requirements: arguments, `-r` files and `-c` files, with uv's own reader. Project
/// files as requirement sources are left to uv's own command line.
pub async fn read_requirements(call: Call<'_>) -> Result<RequirementsSpecification> {
    let (args, cwd) = (call.args, call.cwd);
    let mut sources = Vec::new();
    for package in &args.packages {
        sources.push(RequirementsSource::Package(install::parse_argument(
            package, cwd,
        )?));
    }
    sources.extend(install::file_sources(
        &args.requirements,
        cwd,
        RequirementsSource::from_requirements_file,
    )?);
    let constraints = install::file_sources(
        &args.constraints,
        cwd,
        RequirementsSource::from_constraints_txt,
    )?;
    let spec = install::read_specification(call.shared, &sources, &constraints).await?;
    if !spec.source_trees.is_empty() || spec.pylock.is_some() || !spec.groups.is_empty() {
        return Err(FfiError::new(ErrorKind::DeferToUv, "project files"));
    }
    Ok(spec)
}

/// What uv passes for options the warm path leaves at their defaults (config settings, extra
/// build requirements and variables).
#[derive(Default)]
struct BuildDefaults {
    config_settings: ConfigSettings,
    config_settings_package: PackageConfigSettings,
    extra_build_requires: ExtraBuildRequires,
    extra_build_variables: ExtraBuildVariables,
}

/// Whether the environment already satisfies the requirements, as uv's early exit decides it.
pub fn satisfied_already(state: &mut EnvState, spec: &RequirementsSpecification) -> Result<bool> {
    let markers = state.markers.clone();
    let tags = state.tags().clone();
    let defaults = BuildDefaults::default();
    let satisfied = state
        .site_packages()?
        .satisfies_spec(
            &spec.requirements,
            &spec.constraints,
            &spec.overrides,
            &spec.override_dependencies,
            &spec.excludes,
            InstallationStrategy::Permissive,
            &markers,
            &tags,
            &defaults.config_settings,
            &defaults.config_settings_package,
            &defaults.extra_build_requires,
            &defaults.extra_build_variables,
        )
        .map_err(|err| FfiError::from_anyhow(ErrorKind::Install, &err))?;
    Ok(matches!(satisfied, SatisfiesResult::Fresh { .. }))
}

/// Everything an install decides before it resolves, from the command, its requirement files
/// and the call's policy.
pub struct Settings {
    pub reinstall: Reinstall,
    pub upgrade: Upgrade,
    pub link_mode: LinkMode,
    pub hasher: HashStrategy,
    pub index_locations: IndexLocations,
    pub index_strategy: IndexStrategy,
    pub build_options: BuildOptions,
    /// The cache, with the refresh policy of this call.
    pub cache: Cache,
    /// Index pages kept from earlier calls may serve this one.
    pub may_reuse_pages: bool,
}

impl Settings {
    pub fn new(call: Call<'_>, spec: &RequirementsSpecification, state: &EnvState) -> Result<Self> {
        let args = call.args;
        let reinstall = install::reinstall_of(args)?;
        let upgrade = install::upgrade_of(args)?;
        let hasher = match HashCheckingMode::from_requirements_txt(None, spec.require_hashes) {
            Some(mode) => HashStrategy::from_requirements(
                spec.requirements
                    .iter()
                    .map(|entry| (&entry.requirement, entry.hashes.as_slice())),
                spec.constraints
                    .iter()
                    .map(|entry| (&entry.requirement, entry.hashes.as_slice())),
                Some(&state.markers),
                mode,
            )
            .map_err(|err| FfiError::from_uv(ErrorKind::InvalidRequirement, &err))?,
            None => HashStrategy::None,
        };
        let refresh = call.policy.refresh_index || call.policy.fresh_index;
        let cache = if refresh {
            call.shared
                .cache
                .clone()
                .with_refresh(Refresh::from_args(Some(true), Vec::new()))
        } else if reinstall.is_none() && upgrade.is_none() {
            call.shared.cache.clone()
        } else {
            call.shared.cache.clone().with_refresh(
                Refresh::from(reinstall.clone()).combine(Refresh::from(upgrade.clone())),
            )
        };
        Ok(Self {
            link_mode: install::link_mode(args)?,
            hasher,
            index_locations: install::index_locations(args, spec, call.cwd)?,
            index_strategy: install::value_of("--index-strategy", args.index_strategy.as_deref())?,
            build_options: install::build_options_of(args)?
                .combine(spec.no_binary.clone(), spec.no_build.clone()),
            cache,
            may_reuse_pages: !refresh && reinstall.is_none() && upgrade.is_none(),
            reinstall,
            upgrade,
        })
    }

    /// The identity of the index pages these settings read: the index configuration, and what
    /// reading the pages takes from the interpreter (its markers and platform, and what its
    /// tags are made from), so that the virtual environments of one Python share them.
    fn pages_key(&self, interpreter: &Interpreter) -> String {
        format!(
            "{:?}|{:?}|{}{}{}|{:?}|{:?}|{:?}|{}",
            interpreter.markers(),
            interpreter.platform(),
            u8::from(interpreter.manylinux_compatible()),
            u8::from(interpreter.gil_disabled()),
            u8::from(interpreter.debug_enabled()),
            self.index_locations,
            self.build_options,
            self.index_strategy,
            self.cache.root().display(),
        )
    }
}

/// Index pages for this call: kept from an earlier call when allowed, otherwise read fresh.
/// Returns the pages, their key, and whether they were kept ones.
pub async fn index_pages(
    call: Call<'_>,
    indexes: &mut KeptIndexes,
    settings: &Settings,
    state: &EnvState,
) -> Result<(IndexPages, String, bool)> {
    let interpreter = state.env.interpreter();
    let key = settings.pages_key(interpreter);
    let kept = settings
        .may_reuse_pages
        .then(|| indexes.get(&key, call.policy.index_ttl))
        .flatten();
    if let Some(pages) = kept {
        return Ok((pages, key, true));
    }
    indexes.counters.fresh += 1;
    let client =
        RegistryClientBuilder::new(call.shared.client_builder.clone(), settings.cache.clone())
            .index_locations(settings.index_locations.clone())
            .index_strategy(settings.index_strategy)
            .markers(interpreter.markers())
            .platform(interpreter.platform())
            .wrap_existing(&call.shared.base_client)
            .map_err(|err| FfiError::from_uv(ErrorKind::Index, &err))?;
    let flat_index = flat_index(&client, settings, state.tags()).await?;
    Ok((
        IndexPages::new(client, flat_index, SharedState::default()),
        key,
        false,
    ))
}

async fn flat_index(
    client: &RegistryClient,
    settings: &Settings,
    tags: &Tags,
) -> Result<FlatIndex> {
    let locations = &settings.index_locations;
    if locations.flat_indexes().next().is_none() {
        return Ok(FlatIndex::default());
    }
    let entries = FlatIndexClient::new(
        client.cached_client(),
        client.connectivity(),
        &settings.cache,
    )
    .fetch_all(locations.flat_indexes().map(Index::url))
    .await
    .map_err(|err| FfiError::from_uv(ErrorKind::Index, &err))?;
    Ok(FlatIndex::from_entries(
        entries,
        Some(tags),
        &settings.hasher,
        &settings.build_options,
    ))
}

/// What resolving, planning and applying share: the index pages and the build frontend.
pub struct Context<'a> {
    pub call: Call<'a>,
    pub settings: &'a Settings,
    pub pages: &'a IndexPages,
    pub interpreter: &'a Interpreter,
    pub tags: &'a Tags,
    build_dispatch: BuildDispatch<'a>,
}

impl<'a> Context<'a> {
    pub fn new(
        call: Call<'a>,
        settings: &'a Settings,
        pages: &'a IndexPages,
        interpreter: &'a Interpreter,
        tags: &'a Tags,
        build: &'a BuildInputs,
    ) -> Self {
        let build_dispatch = BuildDispatch::new(
            &pages.client,
            &settings.cache,
            &build.constraints,
            interpreter,
            &settings.index_locations,
            &pages.flat_index,
            &build.dependency_metadata,
            pages.state.clone(),
            settings.index_strategy,
            &build.defaults.config_settings,
            &build.defaults.config_settings_package,
            BuildIsolation::Isolated,
            &build.defaults.extra_build_requires,
            &build.defaults.extra_build_variables,
            settings.link_mode,
            &settings.build_options,
            &build.hasher,
            ExcludeNewer::default(),
            NoSources::default(),
            SourceTreeEditablePolicy::Project,
            WorkspaceCache::default(),
            call.shared.concurrency.clone(),
            Preview::default(),
        );
        Self {
            call,
            settings,
            pages,
            interpreter,
            tags,
            build_dispatch,
        }
    }

    fn database(&self) -> DistributionDatabase<'_, BuildDispatch<'a>> {
        DistributionDatabase::new(
            &self.pages.client,
            &self.build_dispatch,
            self.call.shared.concurrency.downloads_semaphore.clone(),
        )
    }
}

/// What the build frontend borrows for the whole call (uv's defaults for the warm path).
#[derive(Default)]
pub struct BuildInputs {
    constraints: Constraints,
    dependency_metadata: DependencyMetadata,
    /// Builds verify hashes only when asked.
    hasher: HashStrategy,
    defaults: BuildDefaults,
}

/// Resolve the requirements against the environment's snapshot `site`.
pub async fn resolve(
    context: &Context<'_>,
    spec: RequirementsSpecification,
    markers: &uv_pypi_types::ResolverMarkerEnvironment,
    site: &SitePackages,
) -> Result<(Resolution, HashStrategy)> {
    let (args, settings) = (context.call.args, context.settings);
    let index = context.pages.state.index();
    let mut requirements = Vec::new();
    let mut unnamed = Vec::new();
    for entry in spec.requirements {
        match entry.requirement {
            UnresolvedRequirement::Named(requirement) => requirements.push(requirement),
            UnresolvedRequirement::Unnamed(requirement) => unnamed.push(requirement),
        }
    }
    if !unnamed.is_empty() {
        let named = NamedRequirementsResolver::new(&settings.hasher, index, context.database())
            .resolve(unnamed.into_iter())
            .await
            .map_err(|err| FfiError::from_uv(ErrorKind::Resolution, &err))?;
        requirements.extend(named);
    }
    let constraints = Constraints::from_requirements(
        spec.constraints
            .into_iter()
            .map(|constraint| constraint.requirement)
            .chain(settings.upgrade.constraints().cloned()),
    );
    let (overrides, excludes) = (Overrides::default(), Excludes::default());
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
            &settings.hasher,
            index,
            context.database(),
        )
        .resolve(&resolver_env)
        .await
        .map_err(|err| FfiError::from_uv(ErrorKind::Resolution, &err))?,
        DependencyMode::Direct => (Vec::new(), settings.hasher.clone()),
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
            settings.reinstall.clone(),
            UpgradePackages::for_non_project(&settings.upgrade),
        ),
        lookaheads,
    );
    let options = OptionsBuilder::new()
        .resolution_mode(install::value_of(
            "--resolution",
            args.resolution.as_deref(),
        )?)
        .index_strategy(settings.index_strategy)
        .prerelease(install::prerelease(args)?)
        .dependency_mode(dependency_mode)
        .build_options(settings.build_options.clone())
        .build();
    let python_requirement = PythonRequirement::from_interpreter(context.interpreter);
    progress::emit(progress::Event::Phase {
        phase: "resolve",
        total: 0,
    });
    let resolver = Resolver::new(
        manifest,
        options,
        &python_requirement,
        resolver_env,
        context.interpreter.markers(),
        Conflicts::empty(),
        Some(context.tags),
        &context.pages.flat_index,
        index,
        &hasher,
        &context.build_dispatch,
        site.clone(),
        context.database(),
    )
    .map_err(|err| FfiError::from_uv(ErrorKind::Resolution, &err))?;
    let resolver = match progress::Reporter::if_recording() {
        Some(reporter) => resolver.with_reporter(reporter),
        None => resolver,
    };
    let output = resolver.resolve().await.map_err(|err| {
        let kind = match &err {
            uv_resolver::ResolveError::Client(_) => ErrorKind::Index,
            _ => ErrorKind::Resolution,
        };
        FfiError::from_uv(kind, &err)
    })?;
    Ok((Resolution::from(output), hasher))
}

/// Plan against the very snapshot the resolver saw (the planner insists on it).
pub fn plan(
    context: &Context<'_>,
    resolution: &Resolution,
    hasher: &HashStrategy,
    site: SitePackages,
    state: &EnvState,
) -> Result<Plan> {
    let settings = context.settings;
    let defaults = BuildDefaults::default();
    Planner::new(resolution)
        .build(
            site,
            InstallationStrategy::Permissive,
            &settings.reinstall,
            &settings.build_options,
            hasher,
            &settings.index_locations,
            &defaults.config_settings,
            &defaults.config_settings_package,
            &defaults.extra_build_requires,
            &defaults.extra_build_variables,
            &settings.cache,
            &state.env,
            context.tags,
        )
        .map_err(|err| FfiError::from_anyhow(ErrorKind::Install, &err))
}

/// What a dry run reports for a plan: what would be installed and what would be removed.
pub fn dry_run_changes(plan: &Plan) -> (Vec<Pair>, Vec<Pair>) {
    let mut installed: Vec<Pair> = plan
        .remote
        .iter()
        .map(|dist| {
            let version = dist.version_or_url().to_string();
            (
                dist.name().to_string(),
                version.trim_start_matches("==").to_string(),
            )
        })
        .chain(plan.cached.iter().map(cached_pair))
        .collect();
    let mut removed: Vec<Pair> = plan
        .reinstalls
        .iter()
        .map(install::installed_pair)
        .collect();
    installed.sort();
    removed.sort();
    (installed, removed)
}

/// Whether a plan changes nothing.
pub fn is_empty(plan: &Plan) -> bool {
    plan.remote.is_empty() && plan.cached.is_empty() && plan.reinstalls.is_empty()
}

/// Carry out a plan: download or build what is missing, remove what is replaced, link the new
/// wheels, and bring the view up to date. Returns the sorted changelog.
pub async fn apply(
    context: &Context<'_>,
    plan: Plan,
    resolution: &Resolution,
    hasher: &HashStrategy,
    state: &mut EnvState,
    profile: &mut crate::profile::Profile,
) -> Result<(Vec<Pair>, Vec<Pair>)> {
    let Plan {
        cached,
        remote,
        reinstalls,
        extraneous: _,
    } = plan;
    let settings = context.settings;
    progress::stop_point("nothing was changed")?;
    let wheels = if remote.is_empty() {
        Vec::new()
    } else {
        progress::emit(progress::Event::Phase {
            phase: "prepare",
            total: remote.len(),
        });
        let preparer = Preparer::new(
            &settings.cache,
            context.tags,
            hasher,
            &settings.build_options,
            context.database(),
        );
        let preparer = match progress::Reporter::if_recording() {
            Some(reporter) => preparer.with_reporter(reporter),
            None => preparer,
        };
        preparer
            .prepare(remote, context.pages.state.in_flight(), resolution)
            .await
            .map_err(|err| FfiError::from_uv(ErrorKind::Install, &err))?
    };
    profile.mark("prepare");
    progress::stop_point("nothing was changed (the wheels it fetched stay in uv's cache)")?;
    let to_install: Vec<CachedDist> = wheels.into_iter().chain(cached).collect();
    let keys: Vec<Option<WheelKey>> = to_install
        .iter()
        .map(|dist| WheelKey::of(dist, settings.link_mode))
        .collect();
    let mut stash = Stash::open(state, context.call.key, &context.call.shared.stash_memory);
    // Only an environment that has a stash needs to know what it installed.
    let stashing = stash.is_some();
    let replaced: Vec<(InstalledDist, Option<Installed>)> = reinstalls
        .into_iter()
        .map(|dist| {
            let known = state
                .installed_wheels
                .remove(&install::installed_pair(&dist));
            (dist, known)
        })
        .collect();
    let (hits, checked) = check_stash(stash.as_mut(), &keys, &replaced);
    let (stashed, to_remove) = stash_out(stash.as_mut(), replaced, checked, state);
    let mut removed = crate::uninstall::remove(context.interpreter, &to_remove, state).await?;
    removed.extend(stashed);
    removed.sort();
    profile.mark("uninstall");
    let (restored, to_link) = restore(stash.as_mut(), hits, to_install, keys, state);
    let wheels: Vec<CachedDist> = to_link.iter().map(|(dist, _)| dist.clone()).collect();
    let link_mode = link_mode_for(context, &wheels, state);
    let Linked { linked, relinked } = link(context, wheels, link_mode, stash.as_ref(), state)?;
    profile.mark("install");
    if let Some(stash) = stash {
        stash.finish();
        state.stash_untidy = true;
    }
    if stashing {
        remember_linked(context, to_link, link_mode, &relinked, state);
    }
    profile.mark("survey");
    let mut installed: Vec<Pair> = restored
        .iter()
        .chain(linked.iter())
        .map(cached_pair)
        .collect();
    installed.sort();
    state.apply_delta(&installed, &removed);
    Ok((installed, removed))
}

/// What [`swap_by_renames`] did.
pub enum Renamed {
    /// The swap is made: what came back from the stash or was hard-linked again, what went
    /// into the stash, and how many were hard-linked again.
    Done {
        installed: Vec<Pair>,
        removed: Vec<Pair>,
        relinked: usize,
    },
    /// It needs the engine thread (a wheel neither in the stash nor in `relinks`, a
    /// distribution that may not go there): nothing was moved.
    Untouched,
    /// A rename or a link failed part way: what moved stands, each distribution whole in one
    /// place or the other, and the caller finishes the call as uv would.
    Partial,
}

/// A wheel not in the stash that a swap on the caller's thread hard-links again without uv's
/// installer, as [`link`] would (`relink.rs`): the tree uv made of its archive, the site folder
/// it goes to, and the stamps of the files linked from the archive last time (`archives.rs`).
pub struct Relinkable {
    pub tree: Arc<Relink>,
    pub site: PathBuf,
    pub linked: Option<Arc<Stamps>>,
}

/// The wheels a swap may hard-link again, by archive.
pub type Relinks = HashMap<PathBuf, Relinkable>;

/// Carry out `plan` with renames, and links made again from `relinks`, when the stash can take
/// every distribution replaced and every wheel to install is in it, intact, or in `relinks`.
/// The same steps as [`apply`], for a swap made on the caller's thread (`fast_swap.rs`).
/// `keys`: those of `plan.cached`, in order.
pub fn swap_by_renames(
    mut stash: Stash,
    plan: Plan,
    keys: Vec<Option<WheelKey>>,
    relinks: &Relinks,
    state: &mut EnvState,
) -> Renamed {
    if !plan.remote.is_empty() || keys.len() != plan.cached.len() {
        return Renamed::Untouched;
    }
    // Taken out, not copied (each holds a stamp per file); put back if nothing moves.
    let replaced: Vec<(InstalledDist, Option<Installed>)> = plan
        .reinstalls
        .into_iter()
        .map(|dist| {
            let known = state
                .installed_wheels
                .remove(&install::installed_pair(&dist));
            (dist, known)
        })
        .collect();
    let (hits, checked) = check_stash(Some(&mut stash), &keys, &replaced);
    let relinkable = |key: &Option<WheelKey>| {
        key.as_ref()
            .is_some_and(|key| relinks.contains_key(&key.archive))
    };
    let each_found = hits
        .iter()
        .zip(&keys)
        .all(|(hit, key)| hit.is_some() || relinkable(key));
    if !each_found || checked.iter().any(Option::is_none) {
        for (dist, known) in replaced {
            if let Some(known) = known {
                state
                    .installed_wheels
                    .insert(install::installed_pair(&dist), known);
            }
        }
        return Renamed::Untouched;
    }
    let (mut removed, kept_in_place) = stash_out(Some(&mut stash), replaced, checked, state);
    state.stash_untidy = true;
    if !kept_in_place.is_empty() {
        stash.finish();
        return Renamed::Partial;
    }
    let (restored, to_link) = restore(Some(&mut stash), hits, plan.cached, keys, state);
    let relinked = relink_here(to_link, relinks, &stash, state);
    stash.finish();
    let Some(relinked) = relinked else {
        return Renamed::Partial;
    };
    let mut installed: Vec<Pair> = restored
        .iter()
        .chain(relinked.iter())
        .map(cached_pair)
        .collect();
    installed.sort();
    removed.sort();
    state.apply_delta(&installed, &removed);
    Renamed::Done {
        installed,
        removed,
        relinked: relinked.len(),
    }
}

/// Hard-link again each wheel of `to_link` from its tree in `relinks`, and know what it made
/// as [`remember_linked`] would; `None` as soon as one fails (what that one made is removed).
fn relink_here(
    to_link: Vec<(CachedDist, Option<WheelKey>)>,
    relinks: &Relinks,
    stash: &Stash,
    state: &mut EnvState,
) -> Option<Vec<CachedDist>> {
    let mut linked = Vec::new();
    for (dist, key) in to_link {
        let key = key?;
        let relinkable = relinks.get(&key.archive)?;
        let (folders, files) = relinkable.tree.made_new();
        let mut spares = stash.spares(folders, files);
        let site = &relinkable.site;
        relinkable
            .tree
            .apply(&key.archive, site, &mut spares)
            .ok()?;
        state.counters.spares_used += spares.used;
        let (name, version) = cached_pair(&dist);
        progress::emit(progress::Event::Installed {
            name: name.clone(),
            version: version.clone(),
        });
        state.counters.relinked += 1;
        let known = relinkable.linked.as_deref();
        if let Some(made) = Installed::made(key, site, &relinkable.tree, known) {
            state.installed_wheels.insert((name, version), made);
        }
        linked.push(dist);
    }
    Some(linked)
}

/// The checks of a swap: the stash entry for each wheel to install (a `stat` per file), and
/// whether each replaced distribution may be stashed (its folders' names). When every wheel
/// has an entry, the swap is renames only, journaled so that a crash leaves the old versions
/// in place (see `stash.rs`). Run one after the other: waking the pool's threads for them costs more than
/// running them side by side saves (measured with `benchmarks/phases.py`).
fn check_stash(
    stash: Option<&mut Stash>,
    keys: &[Option<WheelKey>],
    replaced: &[(InstalledDist, Option<Installed>)],
) -> (Vec<Option<Found>>, Vec<Option<Vec<String>>>) {
    let Some(stash) = stash else {
        return (
            keys.iter().map(|_| None).collect(),
            replaced.iter().map(|_| None).collect(),
        );
    };
    let hits: Vec<Option<Found>> = keys
        .iter()
        .map(|key| key.as_ref().and_then(|key| stash.find(key)))
        .collect();
    let checked = replaced
        .iter()
        .map(|(dist, known)| known.as_ref().and_then(|i| stash.check_out(dist, i)))
        .collect();
    if !hits.is_empty() && hits.iter().all(Option::is_some) {
        stash.make_atomic(&hits);
    }
    (hits, checked)
}

/// Move into the stash each replaced distribution that passed its check; returns those moved,
/// and those to remove as uv does.
fn stash_out(
    stash: Option<&mut Stash>,
    replaced: Vec<(InstalledDist, Option<Installed>)>,
    checked: Vec<Option<Vec<String>>>,
    state: &mut EnvState,
) -> (Vec<Pair>, Vec<InstalledDist>) {
    let Some(stash) = stash else {
        return (
            Vec::new(),
            replaced.into_iter().map(|(dist, _)| dist).collect(),
        );
    };
    let mut stashed = Vec::new();
    let mut rest = Vec::new();
    for ((dist, known), bytecode) in replaced.into_iter().zip(checked) {
        let moved = known
            .zip(bytecode)
            .and_then(|(installed, bytecode)| stash.stash_out(&dist, installed, &bytecode));
        match moved {
            Some(pair) => {
                progress::emit(progress::Event::Uninstalled {
                    name: pair.0.clone(),
                    version: pair.1.clone(),
                });
                state.counters.stashed += 1;
                stashed.push(pair);
            }
            None => rest.push(dist),
        }
    }
    stash.settle();
    (stashed, rest)
}

/// Bring back from the stash the wheels it holds; returns those restored, and those to link
/// (with their wheel keys).
fn restore(
    stash: Option<&mut Stash>,
    hits: Vec<Option<Found>>,
    to_install: Vec<CachedDist>,
    keys: Vec<Option<WheelKey>>,
    state: &mut EnvState,
) -> (Vec<CachedDist>, Vec<(CachedDist, Option<WheelKey>)>) {
    let mut restored = Vec::new();
    let mut to_link = Vec::new();
    let Some(stash) = stash else {
        return (restored, to_install.into_iter().zip(keys).collect());
    };
    for ((dist, key), hit) in to_install.into_iter().zip(keys).zip(hits) {
        match hit.and_then(|found| stash.restore(found)) {
            Some(installed) => {
                let (name, version) = cached_pair(&dist);
                progress::emit(progress::Event::Installed {
                    name: name.clone(),
                    version: version.clone(),
                });
                state.counters.restored += 1;
                state.installed_wheels.insert((name, version), installed);
                restored.push(dist);
            }
            None => to_link.push((dist, key)),
        }
    }
    (restored, to_link)
}

/// Survey each distribution just linked from an index wheel, so that a later swap may stash it.
/// What a hard-linked install of an archive learned serves the next one (`archives.rs`); a tree
/// made again from what was learned (`relinked`: their archives) is known without reading it.
fn remember_linked(
    context: &Context<'_>,
    linked: Vec<(CachedDist, Option<WheelKey>)>,
    link_mode: LinkMode,
    relinked: &[PathBuf],
    state: &mut EnvState,
) {
    let layout = context.interpreter.layout();
    let hard_links = link_mode == LinkMode::Hardlink;
    let Ok(mut archives) = context.call.shared.archives.lock() else {
        return;
    };
    for (dist, key) in linked {
        let Some(key) = key else { continue };
        let Some(dist_info) = archives.dist_info(&layout, &key.archive) else {
            continue;
        };
        let known = hard_links
            .then(|| archives.linked_files(&key.archive))
            .flatten();
        let archive = key.archive.clone();
        let tree = relinked
            .contains(&archive)
            .then(|| archives.relink(&archive))
            .flatten();
        let installed = match (tree, dist_info.parent()) {
            (Some(tree), Some(site)) => Installed::made(key, site, &tree, known.as_deref()),
            _ => {
                let mut memory = context.call.shared.stash_memory.lock().ok();
                let watches = memory.as_deref_mut().map(|memory| &mut memory.watches);
                Installed::survey(key, &dist_info, known.as_deref(), watches)
            }
        };
        let Some(installed) = installed else {
            continue;
        };
        if hard_links && known.is_none() {
            archives.remember_linked(&archive, installed.stamps());
        }
        if hard_links {
            archives.learn_relink(&archive, &dist_info);
        }
        state.installed_wheels.insert(cached_pair(&dist), installed);
    }
}

/// What [`link`] installed.
struct Linked {
    linked: Vec<CachedDist>,
    /// The archives of those made again without uv's installer (`relink.rs`).
    relinked: Vec<PathBuf>,
}

/// Link the wheels into the environment, on the engine's own rayon pool (rayon's global pool
/// does not survive a fork). A failure may leave a partial install: the view is dropped.
fn link(
    context: &Context<'_>,
    wheels: Vec<CachedDist>,
    link_mode: LinkMode,
    stash: Option<&Stash>,
    state: &mut EnvState,
) -> Result<Linked> {
    let mut done = Linked {
        linked: Vec::new(),
        relinked: Vec::new(),
    };
    if wheels.is_empty() {
        return Ok(done);
    }
    progress::emit(progress::Event::Phase {
        phase: "install",
        total: wheels.len(),
    });
    // Copy mode: copied once into a staging folder, then linked from there (see staging.rs).
    let (wheels, link_mode, _staging) = if link_mode == LinkMode::Copy {
        let site = state.site_dirs().into_iter().next();
        let staging = Staging::new(&site.unwrap_or_default())?;
        let staged = context.call.shared.pool.install(|| staging.stage(wheels))?;
        (staged, LinkMode::Hardlink, Some(staging))
    } else {
        (wheels, link_mode, None)
    };
    let wheels = if link_mode == LinkMode::Hardlink {
        relink(context, wheels, stash, &mut done, state)
    } else {
        wheels
    };
    if wheels.is_empty() {
        return Ok(done);
    }
    let installer = uv_installer::Installer::new(&state.env, Preview::default())
        .with_link_mode(link_mode)
        .with_cache(&context.settings.cache)
        .with_installer_metadata(true);
    let installer = match progress::Reporter::if_recording() {
        Some(reporter) => installer.with_reporter(reporter),
        None => installer,
    };
    let outcome = context
        .call
        .shared
        .pool
        .install(|| installer.install_blocking(wheels));
    let linked = outcome.map_err(|err| {
        state.invalidate();
        FfiError::from_anyhow(ErrorKind::Install, &err)
    })?;
    done.linked.extend(linked);
    Ok(done)
}

/// Hard-link again, without uv's installer, each wheel whose archive uv hard-linked before
/// (`relink.rs`), noting it in `done`; returns those left to uv's installer.
fn relink(
    context: &Context<'_>,
    wheels: Vec<CachedDist>,
    stash: Option<&Stash>,
    done: &mut Linked,
    state: &mut EnvState,
) -> Vec<CachedDist> {
    let layout = context.interpreter.layout();
    let Ok(mut archives) = context.call.shared.archives.lock() else {
        return wheels;
    };
    let mut rest = Vec::new();
    for wheel in wheels {
        // Only an index wheel: one from a path or URL gets a `direct_url.json` naming it.
        if !matches!(wheel, CachedDist::Registry(_)) {
            rest.push(wheel);
            continue;
        }
        let archive = wheel.path().to_path_buf();
        // Learned archives only: finding where a new one's `.dist-info` goes reads its `WHEEL`.
        let made = archives.relink(&archive).and_then(|relink| {
            let dist_info = archives.dist_info(&layout, &archive)?;
            let (folders, files) = relink.made_new();
            let mut spares = stash.map_or_else(Default::default, |s| s.spares(folders, files));
            relink
                .apply(&archive, dist_info.parent()?, &mut spares)
                .ok()?;
            Some(spares.used)
        });
        if let Some(spares_used) = made {
            state.counters.spares_used += spares_used;
            let (name, version) = cached_pair(&wheel);
            progress::emit(progress::Event::Installed { name, version });
            state.counters.relinked += 1;
            done.relinked.push(archive);
            done.linked.push(wheel);
        } else {
            rest.push(wheel);
        }
    }
    rest
}

/// The call's link mode, or hard links where it is `clone` and the environment's filesystem
/// refuses to clone from the cache (see `reflink.rs`).
fn link_mode_for(context: &Context<'_>, wheels: &[CachedDist], state: &EnvState) -> LinkMode {
    let requested = context.settings.link_mode;
    let (Some(first), Some(site)) = (wheels.first(), state.site_dirs().into_iter().next()) else {
        return requested;
    };
    match context.call.shared.clone_support.lock() {
        Ok(mut support) => support.mode(requested, first.path(), &site),
        Err(_) => requested,
    }
}

fn cached_pair(dist: &CachedDist) -> Pair {
    (dist.name().to_string(), dist.filename().version.to_string())
}
