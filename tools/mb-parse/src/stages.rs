//! From checked instructions to the graph: global ARGs, stages and their references, pruning to
//! what the target needs, and each kept instruction's expanded `Op`, with the environment and
//! ARG scope BuildKit would have at that point.
//!
//! Two passes: the first resolves every stage's base and COPY --from (syntax only, global ARGs),
//! and the ONBUILD triggers a base stage hands to the stages built on it, so the target's needs
//! are known before anything else happens; the second walks only the needed stages in order,
//! because a stage's variables depend on its base and on what ran before in it. Unused stages
//! are never expanded and their base images never looked up.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher};

use mb_core::graph::{
    ArgDecl, Base, Command, CopyFrom, Graph, Heredoc, Instruction, Location, NameValue, Op,
    Platform, Stage,
};
use mb_core::image::{ImageConfig, ONBUILD_FIELD};
use mb_core::mode::ModeChange;

use crate::error::Problem;
use crate::expand::{expand_heredoc, expand_word, Variables};
use crate::instruction::{self, CommandText, CopySyntax, Parsed, Syntax};
use crate::lexer::{self, RawInstruction};
use crate::mount::{run_mount, MountContext};

/// What the graph is built for, besides the Dockerfile text.
#[derive(Debug, Clone)]
pub struct Options {
    /// The Dockerfile as named on the command line (`-` for stdin).
    pub file: String,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// The platform built for.
    pub platform: Platform,
    /// The platform building (the host).
    pub build_platform: Platform,
    /// Expand every stage, not only those the target needs, so that `--check` finds every
    /// problem. The graph then holds every stage.
    pub all_stages: bool,
}

impl Options {
    /// Options for building the last stage for `platform` on the same platform, with no
    /// build args.
    pub fn new(file: &str, platform: Platform) -> Options {
        Options {
            file: file.to_string(),
            build_args: BTreeMap::new(),
            target: None,
            build_platform: platform.clone(),
            platform,
            all_stages: false,
        }
    }
}

/// Where base images' configurations come from (the local store, or a table in tests).
pub trait BaseImages {
    /// The config of the image with normalised reference `reference`, if it is available.
    fn config(&mut self, reference: &str) -> Option<ImageConfig>;
}

/// No base image is known: each one starts from an empty config (as when the store does not
/// hold it yet). For parsing without a store: fuzzing, benchmarks.
pub struct NoBaseImages;

impl BaseImages for NoBaseImages {
    fn config(&mut self, _reference: &str) -> Option<ImageConfig> {
        None
    }
}

/// Parses `text` into the graph, or returns every problem found.
pub fn build_graph(
    text: &str,
    options: &Options,
    images: &mut dyn BaseImages,
) -> Result<Graph, Vec<Problem>> {
    let lexed = lexer::lex_recovering(text);
    for line in &lexed.empty_continuation_lines {
        tracing::warn!(
            "{}:{line}: empty continuation line (skipped, as BuildKit does; it warns too)",
            options.file
        );
    }
    let lines = lexed.lines;
    let mut problems = lexed.problems;
    // What the lexer could not read is reported with whatever else is wrong, so that `--check`
    // lists everything at once; base images are not looked up (or pulled) for a file that fails.
    let images = if problems.is_empty() {
        images
    } else {
        &mut NoBaseImages
    };
    match build(lexed.instructions, lexed.directives.escape, options, images) {
        Ok(graph) if problems.is_empty() => return Ok(graph),
        Ok(_) => {}
        Err(found) => problems.extend(found),
    }
    problems.sort_by_key(|problem| problem.line);
    for problem in &mut problems {
        problem.show_line_from(&lines);
    }
    Err(problems)
}

fn build(
    instructions: Vec<RawInstruction<'_>>,
    escape: char,
    options: &Options,
    images: &mut dyn BaseImages,
) -> Result<Graph, Vec<Problem>> {
    let mut problems = Vec::new();
    if instructions.is_empty() {
        return Err(vec![Problem::whole_file(
            "no instructions (the Dockerfile is empty or only comments)",
        )]);
    }
    let n_instructions = instructions.len();
    // Each stage's body gets its final size up front: growing vectors of instructions (which
    // are large) was a visible share of the time in profiles.
    let from_positions: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, raw)| raw.keyword.eq_ignore_ascii_case("FROM"))
        .map(|(position, _)| position)
        .collect();
    let body_capacity = |from_position: usize| {
        let next = from_positions.partition_point(|&position| position <= from_position);
        from_positions.get(next).unwrap_or(&n_instructions) - from_position - 1
    };
    let mut global_args = Vec::new();
    let mut drafts: Vec<Draft> = Vec::with_capacity(from_positions.len());
    for (position, raw) in instructions.into_iter().enumerate() {
        let parsed = match instruction::parse(raw, escape) {
            Ok(parsed) => parsed,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        match (&parsed.syntax, drafts.last_mut()) {
            (Syntax::From { .. }, _) => drafts.push(Draft {
                from: parsed,
                body: Vec::with_capacity(body_capacity(position)),
            }),
            (_, Some(draft)) => draft.body.push(parsed),
            (Syntax::Arg(_), None) => global_args.push(parsed),
            (_, None) => problems.push(problem_at(
                &parsed,
                format!(
                    "{} before the first FROM (only ARG may come before it)",
                    parsed.keyword
                ),
            )),
        }
    }
    if drafts.is_empty() {
        problems.push(Problem::whole_file("no FROM instruction: nothing to build"));
        return Err(problems);
    }
    let mut builder = Builder {
        options,
        escape,
        globals: Vars::default(),
        proxy_args: options
            .build_args
            .iter()
            .filter(|(name, _)| crate::is_proxy_arg(name))
            .map(|(name, value)| NameValue {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        problems,
    };
    builder.declare_globals(&global_args);
    let by_name = builder.stage_names(&drafts);
    let stage_names = builder.written_references(&drafts, by_name);
    let resolved: Vec<Resolved> = (0..drafts.len())
        .map(|index| builder.resolve(index, &drafts, &stage_names))
        .collect();
    let target = match &options.target {
        None => drafts.len() - 1,
        Some(target) => match stage_names.by_name.get(&target.to_ascii_lowercase()) {
            Some(&index) => index,
            None => {
                let known: Vec<&str> = drafts.iter().filter_map(|draft| draft.name()).collect();
                builder.problems.push(Problem::whole_file(format!(
                    "--target {target}: no stage has that name (named stages: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
                return Err(builder.problems);
            }
        },
    };
    let needed = if options.all_stages {
        vec![true; drafts.len()]
    } else {
        needed_stages(target, &resolved)
    };
    let build_args = declared_build_args(options, &global_args, &drafts);
    let mut scopes: Vec<Option<Scope>> = vec![None; drafts.len()];
    let mut stages = Vec::new();
    // The drafts are consumed: each instruction's words move into the graph.
    for (index, (draft, resolved)) in drafts.into_iter().zip(resolved).enumerate() {
        if !needed[index] {
            continue;
        }
        let Some(base) = resolved.base else {
            continue;
        };
        let mut triggers = resolved.triggers;
        let scope = match &base {
            Base::Scratch => Some(Scope::from_config(ImageConfig::default())),
            Base::Image { reference } => {
                let config = images.config(reference).unwrap_or_default();
                triggers =
                    builder.image_onbuild_triggers(index, &draft, &config, &stage_names, &needed);
                Some(Scope::from_config(config))
            }
            Base::Stage { index } => scopes[*index].clone(),
        };
        let Some(mut scope) = scope else {
            continue;
        };
        let name = draft.name().map(str::to_ascii_lowercase);
        let location = builder.location(&draft.from);
        let body = triggers
            .into_iter()
            .chain(draft.body.into_iter().zip(resolved.references));
        let instructions = builder.dispatch_stage(body, &mut scope);
        scopes[index] = Some(scope);
        stages.push(Stage {
            index,
            name,
            location,
            base,
            platform: resolved.platform,
            instructions,
        });
    }
    if !builder.problems.is_empty() {
        builder.problems.sort_by_key(|problem| problem.line);
        return Err(builder.problems);
    }
    Ok(Graph {
        dockerfile: options.file.clone(),
        target,
        platform: options.platform.clone(),
        build_args,
        stages,
    })
}

/// The stages by (lowercased) name, and what each refers to as written.
struct StageNames {
    by_name: HashMap<String, usize>,
    /// For each stage, the stages its FROM, COPY --from and RUN --mount from= name, earlier or
    /// later.
    written: Vec<Vec<usize>>,
    /// Each stage's name, or `stage-N` as BuildKit calls an unnamed one, for messages.
    labels: Vec<String>,
}

impl StageNames {
    /// Whether stage `index` referring to stage `stage` (itself or a later one) closes a cycle:
    /// `stage` is `index` or refers back to it, directly or through others.
    fn closes_a_cycle(&self, index: usize, stage: usize) -> bool {
        let mut seen = vec![false; self.written.len()];
        let mut pending = vec![stage];
        while let Some(current) = pending.pop() {
            if current == index {
                return true;
            }
            if let Some(refers_to) = self.written.get(current) {
                if !std::mem::replace(&mut seen[current], true) {
                    pending.extend(refers_to);
                }
            }
        }
        false
    }

    /// BuildKit's words for a cycle through stage `index`.
    fn cycle(&self, index: usize) -> String {
        let label = self.labels.get(index).map_or("", String::as_str);
        format!("circular dependency detected on stage: {label}")
    }

    /// Why stage `index` cannot refer to stage `stage` (itself or a later one) by `name`.
    fn forward_reference(&self, index: usize, stage: usize, name: &str) -> String {
        if self.closes_a_cycle(index, stage) {
            self.cycle(index)
        } else {
            format!("stage `{name}` is used before it is defined")
        }
    }
}

/// A FROM and the instructions under it, before resolution.
struct Draft {
    from: Parsed,
    body: Vec<Parsed>,
}

impl Draft {
    fn name(&self) -> Option<&str> {
        match &self.from.syntax {
            Syntax::From { name, .. } => name.as_deref(),
            _ => None,
        }
    }
}

/// A stage's references, resolved in the first pass.
struct Resolved {
    /// None when the FROM line had a problem.
    base: Option<Base>,
    /// `FROM --platform`, expanded.
    platform: Option<Platform>,
    /// What each body instruction refers to, by position in the body.
    references: Vec<References>,
    /// The ONBUILD triggers of a base stage, to run first, with what they refer to.
    triggers: Vec<(Parsed, References)>,
}

/// The other stages or images one instruction reads from.
#[derive(Debug, Clone, Default)]
struct References {
    /// COPY --from.
    copy_from: Option<CopyFrom>,
    /// RUN --mount from=, one entry per mount.
    mount_from: Vec<Option<CopyFrom>>,
}

impl References {
    fn stages(&self) -> impl Iterator<Item = usize> + '_ {
        self.copy_from
            .iter()
            .chain(self.mount_from.iter().flatten())
            .filter_map(|source| match source {
                CopyFrom::Stage { index } => Some(*index),
                _ => None,
            })
    }
}

/// Variables in declaration order with a name index: ENV, or ARGs (which may have no value).
#[derive(Debug, Clone, Default)]
struct Vars {
    entries: Vec<(String, Option<String>)>,
    index: HashMap<String, usize, NameHashing>,
}

/// FNV-1a for variable names. Every expanded variable and every ENV is looked up, and the
/// default SipHash showed in profiles; its resistance to crafted collisions buys nothing here,
/// where the only one slowed down by a crafted Dockerfile is its author.
#[derive(Debug, Clone, Copy, Default)]
struct NameHashing;

impl BuildHasher for NameHashing {
    type Hasher = NameHasher;

    fn build_hasher(&self) -> NameHasher {
        NameHasher(0xcbf2_9ce4_8422_2325)
    }
}

struct NameHasher(u64);

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl Vars {
    fn set(&mut self, name: &str, value: Option<String>) {
        match self.index.get(name) {
            Some(&position) => self.entries[position].1 = value,
            None => {
                self.index.insert(name.to_string(), self.entries.len());
                self.entries.push((name.to_string(), value));
            }
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }
}

impl Variables for Vars {
    fn value(&self, name: &str) -> Option<&str> {
        self.index
            .get(name)
            .and_then(|&position| self.entries[position].1.as_deref())
    }
}

/// What a stage has in effect at one point: the image env, the ARGs, the shell and WORKDIR.
#[derive(Debug, Clone)]
struct Scope {
    env: Vars,
    args: Vars,
    shell: Vec<String>,
    workdir: String,
    /// RUN's ARG environment, kept until an ENV or ARG changes it: most RUNs in a row share
    /// it, and building it filters and sorts every ARG in scope.
    args_env: Option<Vec<NameValue>>,
}

impl Scope {
    fn from_config(config: ImageConfig) -> Scope {
        let config = config.for_new_stage();
        let mut env = Vars::default();
        for pair in config.env.iter().flatten() {
            if let Some((name, value)) = pair.split_once('=') {
                env.set(name, Some(value.to_string()));
            }
        }
        Scope {
            env,
            args: Vars::default(),
            args_env: None,
            shell: config.shell_or_default(),
            workdir: config.working_dir_or_root(),
        }
    }

    /// ARGs with a value that no ENV of the same name hides, and the proxy build args that no
    /// ARG declares, sorted by name.
    fn args_env(&mut self, proxy_args: &[NameValue]) -> Vec<NameValue> {
        if let Some(args) = &self.args_env {
            return args.clone();
        }
        let mut args: Vec<NameValue> = self
            .args
            .entries
            .iter()
            .filter(|(name, _)| !self.env.contains(name))
            .filter_map(|(name, value)| {
                value.as_ref().map(|value| NameValue {
                    name: name.clone(),
                    value: value.clone(),
                })
            })
            .collect();
        args.extend(
            proxy_args
                .iter()
                .filter(|proxy| !self.args.contains(&proxy.name) && !self.env.contains(&proxy.name))
                .cloned(),
        );
        args.sort();
        self.args_env = Some(args.clone());
        args
    }

    fn command(&self, text: CommandText) -> Command {
        match text {
            CommandText::Exec(args) => Command::Exec { args },
            CommandText::Shell(script) => Command::Shell {
                shell: self.shell.clone(),
                script,
            },
        }
    }
}

impl Variables for Scope {
    /// ENV wins over an ARG of the same name, whichever came first.
    fn value(&self, name: &str) -> Option<&str> {
        match self.env.index.get(name) {
            Some(&position) => self.env.entries[position].1.as_deref(),
            None => self.args.value(name),
        }
    }
}

struct Builder<'a> {
    options: &'a Options,
    escape: char,
    /// Global ARGs and the predefined platform ARGs: what FROM lines and in-stage `ARG X`
    /// without a default see.
    globals: Vars,
    /// Proxy variables given as build args, which reach RUN undeclared (see [`crate::is_proxy_arg`]).
    proxy_args: Vec<NameValue>,
    problems: Vec<Problem>,
}

impl Builder<'_> {
    fn location(&self, parsed: &Parsed) -> Location {
        Location {
            file: self.options.file.clone(),
            line: parsed.line,
            end_line: parsed.end_line,
        }
    }

    fn expand<'w>(&self, word: &'w str, variables: &dyn Variables) -> Result<Cow<'w, str>, String> {
        expand_word(word, self.escape, variables)
    }

    /// `word` expanded, keeping its allocation when expansion changes nothing.
    fn expand_owned(&self, word: String, variables: &dyn Variables) -> Result<String, String> {
        let changed = match self.expand(&word, variables) {
            Ok(Cow::Borrowed(_)) => None,
            Ok(Cow::Owned(expanded)) => Some(expanded),
            Err(message) => return Err(message),
        };
        Ok(changed.unwrap_or(word))
    }

    fn declare_globals(&mut self, global_args: &[Parsed]) {
        for (name, value) in predefined_args(&self.options.platform, &self.options.build_platform) {
            self.globals.set(name, Some(value));
        }
        for parsed in global_args {
            let Syntax::Arg(declarations) = &parsed.syntax else {
                continue;
            };
            for (name, default) in declarations {
                let value = match (self.options.build_args.get(name), default) {
                    (Some(given), _) => Some(given.clone()),
                    (None, Some(default)) => match self.expand(default, &self.globals) {
                        Ok(value) => Some(value.into_owned()),
                        Err(message) => {
                            self.problems.push(problem_at(parsed, message));
                            continue;
                        }
                    },
                    (None, None) => self.globals.value(name).map(str::to_string),
                };
                self.globals.set(name, value);
            }
        }
    }

    /// The stage names, with what each stage refers to as written (forward references
    /// included), so that a reference that is not allowed can be told apart as a cycle.
    fn written_references(&self, drafts: &[Draft], by_name: HashMap<String, usize>) -> StageNames {
        let lookup = |word: &str| match word.parse::<usize>() {
            Ok(stage) => (stage < drafts.len()).then_some(stage),
            Err(_) => by_name.get(&word.to_ascii_lowercase()).copied(),
        };
        let mut written = Vec::with_capacity(drafts.len());
        for (index, draft) in drafts.iter().enumerate() {
            let mut refers_to = Vec::new();
            if let Syntax::From { image, .. } = &draft.from.syntax {
                let expanded = self.expand(image, &self.globals).unwrap_or_default();
                // Only names: an index in FROM is an image tag, and a stage's own name the image.
                refers_to.extend(
                    by_name
                        .get(&expanded.to_ascii_lowercase())
                        .filter(|&&stage| stage != index),
                );
            }
            for parsed in &draft.body {
                match &parsed.syntax {
                    Syntax::Copy(CopySyntax {
                        from: Some(from), ..
                    }) => refers_to.extend(lookup(from)),
                    Syntax::Run { mounts, .. } => refers_to.extend(
                        mounts
                            .iter()
                            .filter_map(|mount| mount.from.as_deref().and_then(lookup)),
                    ),
                    _ => {}
                }
            }
            written.push(refers_to);
        }
        let labels = drafts
            .iter()
            .enumerate()
            .map(|(index, draft)| match draft.name() {
                Some(name) => name.to_ascii_lowercase(),
                None => format!("stage-{index}"),
            })
            .collect();
        StageNames {
            by_name,
            written,
            labels,
        }
    }

    /// Checks stage names and maps each (lowercased) to its index.
    fn stage_names(&mut self, drafts: &[Draft]) -> HashMap<String, usize> {
        let mut names = HashMap::new();
        for (index, draft) in drafts.iter().enumerate() {
            let Some(name) = draft.name() else {
                continue;
            };
            let lowered = name.to_ascii_lowercase();
            if !valid_stage_name(&lowered) {
                self.problems.push(problem_at(
                    &draft.from,
                    format!(
                        "invalid stage name `{name}`: it must start with a letter and hold only \
                         letters, digits, `-`, `_` and `.`"
                    ),
                ));
            } else if names.insert(lowered, index).is_some() {
                self.problems.push(problem_at(
                    &draft.from,
                    format!("duplicate stage name `{name}`"),
                ));
            }
        }
        names
    }

    fn resolve(&mut self, index: usize, drafts: &[Draft], names: &StageNames) -> Resolved {
        let draft = &drafts[index];
        let (base, platform) = match self.resolve_base(index, draft, names) {
            Ok((base, platform)) => (Some(base), platform),
            Err(message) => {
                self.problems.push(problem_at(&draft.from, message));
                (None, None)
            }
        };
        let references = draft
            .body
            .iter()
            .map(|parsed| match references(index, parsed, names) {
                Ok(references) => references,
                Err(message) => {
                    self.problems.push(problem_at(parsed, message));
                    References::default()
                }
            })
            .collect();
        // The triggers of a base stage are in this Dockerfile, so they are known now and the
        // stages they read count when pruning.
        let triggers = match &base {
            Some(Base::Stage { index: parent }) => {
                let parent_draft = &drafts[*parent];
                let text: String = parent_draft
                    .body
                    .iter()
                    .filter_map(|parsed| match &parsed.syntax {
                        Syntax::Onbuild(trigger) => Some([trigger.as_str(), "\n"]),
                        _ => None,
                    })
                    .flatten()
                    .collect();
                let origin = match parent_draft.name() {
                    Some(name) => format!("stage `{name}`"),
                    None => format!("stage {parent}"),
                };
                self.onbuild_triggers(index, draft, &text, &origin, names, None)
            }
            _ => Vec::new(),
        };
        Resolved {
            base,
            platform,
            references,
            triggers,
        }
    }

    /// The ONBUILD triggers recorded in the config of stage `index`'s base image.
    fn image_onbuild_triggers(
        &mut self,
        index: usize,
        draft: &Draft,
        config: &ImageConfig,
        names: &StageNames,
        needed: &[bool],
    ) -> Vec<(Parsed, References)> {
        let Some(serde_json::Value::Array(values)) = config.other.get(ONBUILD_FIELD) else {
            return Vec::new();
        };
        let mut text = String::new();
        for value in values {
            match value.as_str() {
                Some(trigger) => {
                    text.push_str(trigger);
                    text.push('\n');
                }
                None => self.problems.push(onbuild_problem(
                    draft,
                    BASE_IMAGE,
                    format!("`{value}` is not an instruction"),
                )),
            }
        }
        self.onbuild_triggers(index, draft, &text, BASE_IMAGE, names, Some(needed))
    }

    /// ONBUILD triggers (`text`: one per line, each followed by its heredocs), parsed as
    /// instructions placed on stage `index`'s FROM line, with their references resolved. They
    /// run before the stage's own instructions, as BuildKit runs those of a base image or of a
    /// base stage (whose own triggers, once run, are not inherited further). `origin` names
    /// where they come from in messages; `needed` is given when the stages were pruned without
    /// knowing these triggers.
    fn onbuild_triggers(
        &mut self,
        index: usize,
        draft: &Draft,
        text: &str,
        origin: &str,
        names: &StageNames,
        needed: Option<&[bool]>,
    ) -> Vec<(Parsed, References)> {
        let mut problem =
            |message: String| self.problems.push(onbuild_problem(draft, origin, message));
        let lexed = match lexer::lex(text) {
            Ok(lexed) => lexed,
            Err(error) => {
                problem(error.message);
                return Vec::new();
            }
        };
        let mut triggers = Vec::new();
        for mut raw in lexed.instructions {
            raw.line = draft.from.line;
            raw.end_line = draft.from.end_line;
            let written = raw.rest.clone();
            let keyword = raw.keyword.to_ascii_uppercase();
            if matches!(keyword.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                problem(format!("{keyword} is not allowed as an ONBUILD trigger"));
                continue;
            }
            let parsed = match instruction::parse(raw, lexed.directives.escape) {
                Ok(parsed) => parsed,
                Err(error) => {
                    problem(error.message);
                    continue;
                }
            };
            let references = match references(index, &parsed, names) {
                Ok(references) => references,
                Err(message) => {
                    problem(message);
                    continue;
                }
            };
            // Pruning happened before base images were read, so a trigger cannot pull in a
            // stage the target did not already need.
            let unneeded =
                needed.and_then(|needed| references.stages().find(|stage| !needed[*stage]));
            if let Some(stage) = unneeded {
                problem(format!(
                    "`{written}` refers to stage {stage}, which the target does not otherwise need: not supported yet"
                ));
                continue;
            }
            triggers.push((parsed, references));
        }
        triggers
    }

    /// The stage's base and its `--platform` (recorded whenever given: the planner decides
    /// what a platform other than the build's means).
    fn resolve_base(
        &self,
        index: usize,
        draft: &Draft,
        names: &StageNames,
    ) -> Result<(Base, Option<Platform>), String> {
        let Syntax::From {
            platform, image, ..
        } = &draft.from.syntax
        else {
            return Err("not a FROM instruction".to_string());
        };
        let platform = match platform {
            None => None,
            Some(platform) => {
                let expanded = self.expand(platform, &self.globals)?;
                Some(
                    parse_platform(&expanded)
                        .ok_or_else(|| format!("invalid --platform `{expanded}`"))?,
                )
            }
        };
        let expanded = self.expand(image, &self.globals)?;
        if expanded.is_empty() {
            return Err(format!("FROM `{image}` expands to nothing"));
        }
        if expanded == "scratch" {
            return Ok((Base::Scratch, platform));
        }
        // As in BuildKit, a FROM looks its name up among the earlier stages only, so a stage's
        // own name (`FROM alpine AS alpine`) is the image.
        match names.by_name.get(&expanded.to_ascii_lowercase()) {
            Some(&stage) if stage < index => return Ok((Base::Stage { index: stage }, platform)),
            Some(&stage) if stage > index => {
                return Err(names.forward_reference(index, stage, &expanded))
            }
            _ => {}
        }
        mb_core::reference::normalize(&expanded)
            .map(|reference| (Base::Image { reference }, platform))
            .map_err(|error| error.to_string())
    }

    fn dispatch_stage(
        &mut self,
        body: impl Iterator<Item = (Parsed, References)>,
        scope: &mut Scope,
    ) -> Vec<Instruction> {
        let mut instructions = Vec::with_capacity(body.size_hint().0);
        for (parsed, references) in body {
            let location = self.location(&parsed);
            let Parsed {
                line,
                keyword,
                flags,
                arguments,
                form,
                mut heredocs,
                syntax,
                ..
            } = parsed;
            match self.dispatch(syntax, references, &mut heredocs, scope) {
                Ok(op) => instructions.push(Instruction {
                    location,
                    keyword: keyword.to_string(),
                    flags,
                    arguments,
                    form,
                    heredocs,
                    op,
                }),
                Err(message) => self.problems.push(Problem::on_line(line, message)),
            }
        }
        instructions
    }

    /// The expanded meaning of one instruction; updates the scope for the ones after it. Every
    /// word is expanded with the scope from before the instruction.
    fn dispatch(
        &self,
        syntax: Syntax,
        references: References,
        heredocs: &mut [Heredoc],
        scope: &mut Scope,
    ) -> Result<Op, String> {
        let op = match syntax {
            Syntax::From { .. } => return Err("FROM inside a stage".to_string()),
            Syntax::Run {
                command,
                network,
                mounts,
                script,
            } => {
                let mut ssh_index = 0;
                let mut run_mounts = Vec::with_capacity(mounts.len());
                let expand = |word: &str| self.expand(word, &*scope).map(Cow::into_owned);
                let mut mount_from = references.mount_from.into_iter();
                for syntax in &mounts {
                    let context = MountContext {
                        from: mount_from.next().flatten(),
                        workdir: &scope.workdir,
                        ssh_index,
                    };
                    let mount = run_mount(syntax, context, &expand)?;
                    if mount.kind == mb_core::graph::MountKind::Ssh {
                        ssh_index += 1;
                    }
                    run_mounts.push(mount);
                }
                Op::Run {
                    command: scope.command(command),
                    args_env: scope.args_env(&self.proxy_args),
                    network,
                    mounts: run_mounts,
                    script,
                }
            }
            Syntax::Copy(copy) => {
                let sources = copy
                    .sources
                    .into_iter()
                    .map(|source| self.expand_owned(source, &*scope))
                    .collect::<Result<Vec<_>, _>>()?;
                check_sources(copy.add, &sources)?;
                let checksum = match copy.checksum {
                    None => None,
                    Some(checksum) => Some(check_checksum(
                        self.expand_owned(checksum, &*scope)?,
                        &sources,
                    )?),
                };
                for heredoc in heredocs.iter_mut().filter(|heredoc| heredoc.expand) {
                    // mb-exec writes COPY heredocs as they are: it cannot know the ARGs in scope.
                    if let Cow::Owned(body) = expand_heredoc(&heredoc.body, &*scope)? {
                        heredoc.body = body;
                    }
                    heredoc.expand = false;
                }
                let destination = self.expand(&copy.destination, &*scope)?;
                let destination = copy_destination(&scope.workdir, &destination);
                let expand_flag = |value: Option<String>| {
                    value
                        .map(|value| self.expand_owned(value, &*scope))
                        .transpose()
                };
                let chmod = expand_flag(copy.chmod)?;
                // Checked here, at its line, with the rules mb-exec applies it by.
                if let Some(chmod) = &chmod {
                    ModeChange::parse(chmod).map_err(|bad| bad.to_string())?;
                }
                Op::Copy {
                    add: copy.add,
                    from: references.copy_from.unwrap_or(CopyFrom::Context),
                    sources,
                    destination,
                    chown: expand_flag(copy.chown)?,
                    chmod,
                    link: copy.link,
                    checksum,
                }
            }
            Syntax::Env(pairs) => {
                let vars = self.expand_pairs("ENV", pairs, scope)?;
                for var in &vars {
                    // An ENV changes RUN's ARG environment only by hiding an ARG of its name.
                    if scope.args.contains(&var.name) || crate::is_proxy_arg(&var.name) {
                        scope.args_env = None;
                    }
                    scope.env.set(&var.name, Some(var.value.clone()));
                }
                Op::Env { vars }
            }
            Syntax::Label(pairs) => Op::Label {
                labels: self.expand_pairs("LABEL", pairs, scope)?,
            },
            Syntax::Arg(declarations) => {
                let mut args = Vec::with_capacity(declarations.len());
                for (name, default) in declarations {
                    let value = match (self.options.build_args.get(&name), default) {
                        (Some(given), _) => Some(given.clone()),
                        (None, Some(default)) => Some(self.expand_owned(default, &*scope)?),
                        (None, None) => self.globals.value(&name).map(str::to_string),
                    };
                    scope.args.set(&name, value.clone());
                    scope.args_env = None;
                    args.push(ArgDecl { name, value });
                }
                Op::Arg { args }
            }
            Syntax::Workdir(path) => {
                let expanded = self.expand(&path, &*scope)?;
                if expanded.is_empty() {
                    return Err(format!("WORKDIR `{path}` expands to nothing"));
                }
                let path = resolve_path(&scope.workdir, &expanded);
                scope.workdir.clone_from(&path);
                Op::Workdir { path }
            }
            Syntax::User(user) => {
                let expanded = self.expand(&user, &*scope)?;
                if expanded.is_empty() {
                    return Err(format!("USER `{user}` expands to nothing"));
                }
                Op::User {
                    user: expanded.into_owned(),
                }
            }
            Syntax::StopSignal(signal) => {
                let expanded = self.expand(&signal, &*scope)?;
                if !is_signal(&expanded) {
                    return Err(format!(
                        "STOPSIGNAL `{expanded}` is not a signal: use a name like SIGTERM or TERM, or a number from 1 to 64"
                    ));
                }
                Op::StopSignal {
                    signal: expanded.into_owned(),
                }
            }
            Syntax::Expose(words) => {
                let mut ports = Vec::new();
                for word in &words {
                    ports.extend(parse_port(&self.expand(word, &*scope)?)?);
                }
                Op::Expose { ports }
            }
            Syntax::Volume(paths) => {
                let paths = paths
                    .into_iter()
                    .map(|path| self.expand_owned(path, &*scope))
                    .collect::<Result<Vec<_>, _>>()?;
                if paths.iter().any(String::is_empty) {
                    return Err("VOLUME paths cannot be empty".to_string());
                }
                Op::Volume { paths }
            }
            Syntax::Cmd(command) => Op::Cmd {
                command: scope.command(command),
            },
            Syntax::Entrypoint(command) => Op::Entrypoint {
                command: scope.command(command),
            },
            Syntax::Shell(shell) => {
                scope.shell.clone_from(&shell);
                Op::Shell { shell }
            }
            Syntax::Healthcheck(healthcheck) => Op::Healthcheck { healthcheck },
            Syntax::Onbuild(trigger) => Op::Onbuild { trigger },
        };
        Ok(op)
    }

    /// ENV and LABEL pairs, expanded; names cannot expand to nothing.
    fn expand_pairs(
        &self,
        keyword: &str,
        pairs: Vec<(String, String)>,
        scope: &Scope,
    ) -> Result<Vec<NameValue>, String> {
        pairs
            .into_iter()
            .map(|(name, value)| {
                let name = self.expand_owned(name, scope)?;
                if name.is_empty() {
                    return Err(format!("{keyword} names cannot be empty"));
                }
                Ok(NameValue {
                    name,
                    value: self.expand_owned(value, scope)?,
                })
            })
            .collect()
    }
}

/// Where ONBUILD triggers of a base image come from, in messages.
const BASE_IMAGE: &str = "the base image";

/// A problem with an ONBUILD trigger that `draft`'s stage runs, shown on its FROM line.
fn onbuild_problem(draft: &Draft, origin: &str, message: String) -> Problem {
    problem_at(
        &draft.from,
        format!("ONBUILD trigger of {origin}: {message}"),
    )
}

/// A problem on `parsed`'s line; `build_graph` adds the line's text.
fn problem_at(parsed: &Parsed, message: impl Into<String>) -> Problem {
    Problem::on_line(parsed.line, message)
}

/// BuildKit's predefined platform ARGs.
fn predefined_args(target: &Platform, build: &Platform) -> Vec<(&'static str, String)> {
    let variant = |platform: &Platform| platform.variant.clone().unwrap_or_default();
    vec![
        ("BUILDPLATFORM", build.display()),
        ("BUILDOS", build.os.clone()),
        ("BUILDARCH", build.architecture.clone()),
        ("BUILDVARIANT", variant(build)),
        ("TARGETPLATFORM", target.display()),
        ("TARGETOS", target.os.clone()),
        ("TARGETARCH", target.architecture.clone()),
        ("TARGETVARIANT", variant(target)),
    ]
}

/// `os/arch[/variant]`, with the usual architecture aliases (`x86_64`, `aarch64`).
pub fn parse_platform(text: &str) -> Option<Platform> {
    let parts: Vec<&str> = text.split('/').collect();
    let (os, architecture, variant) = match parts.as_slice() {
        [os, architecture] => (*os, *architecture, None),
        [os, architecture, variant] => (*os, *architecture, Some(*variant)),
        _ => return None,
    };
    if os.is_empty() || architecture.is_empty() || variant.is_some_and(str::is_empty) {
        return None;
    }
    let architecture = match architecture.to_ascii_lowercase().as_str() {
        "x86_64" | "x86-64" => "amd64".to_string(),
        "aarch64" => "arm64".to_string(),
        other => other.to_string(),
    };
    // arm64 means v8 unless told otherwise, so `linux/arm64/v8` is plain `linux/arm64`.
    let variant = variant
        .map(str::to_ascii_lowercase)
        .filter(|variant| !(architecture == "arm64" && variant == "v8"));
    Some(Platform {
        os: os.to_ascii_lowercase(),
        architecture,
        variant,
    })
}

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|ch| ch.is_ascii_lowercase())
        && chars.all(|ch| {
            ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '-' | '_' | '.')
        })
}

/// The stages and images an instruction of stage `index` reads from.
fn references(index: usize, parsed: &Parsed, names: &StageNames) -> Result<References, String> {
    match &parsed.syntax {
        Syntax::Copy(CopySyntax {
            from: Some(from), ..
        }) => Ok(References {
            copy_from: Some(resolve_from(index, "COPY --from", from, names)?),
            mount_from: Vec::new(),
        }),
        Syntax::Run { mounts, .. } => Ok(References {
            copy_from: None,
            mount_from: mounts
                .iter()
                .map(|mount| {
                    mount
                        .from
                        .as_deref()
                        .map(|from| resolve_from(index, "RUN --mount from", from, names))
                        .transpose()
                })
                .collect::<Result<_, _>>()?,
        }),
        _ => Ok(References::default()),
    }
}

/// A stage name, a stage index or else an image reference, as `--from` takes them.
fn resolve_from(
    index: usize,
    flag: &str,
    from: &str,
    names: &StageNames,
) -> Result<CopyFrom, String> {
    if from.contains('$') {
        return Err(format!(
            "{flag}={from}: variables are not expanded in --from"
        ));
    }
    if let Ok(stage) = from.parse::<usize>() {
        return if stage < index {
            Ok(CopyFrom::Stage { index: stage })
        } else if names.closes_a_cycle(index, stage) {
            Err(names.cycle(index))
        } else {
            Err(format!(
                "{flag}={from} refers to the current or a later stage"
            ))
        };
    }
    if let Some(&stage) = names.by_name.get(&from.to_ascii_lowercase()) {
        return if stage < index {
            Ok(CopyFrom::Stage { index: stage })
        } else {
            Err(names.forward_reference(index, stage, from))
        };
    }
    mb_core::reference::normalize(from)
        .map(|reference| CopyFrom::Image { reference })
        .map_err(|error| format!("{flag}: {error}"))
}

/// The stages the target needs, by index: itself, its base stages and COPY --from stages,
/// transitively.
fn needed_stages(target: usize, resolved: &[Resolved]) -> Vec<bool> {
    let mut needed = vec![false; resolved.len()];
    let mut pending = vec![target];
    while let Some(index) = pending.pop() {
        if std::mem::replace(&mut needed[index], true) {
            continue;
        }
        if let Some(Base::Stage { index: base }) = &resolved[index].base {
            pending.push(*base);
        }
        let triggers = resolved[index]
            .triggers
            .iter()
            .map(|(_, references)| references);
        for references in resolved[index].references.iter().chain(triggers) {
            pending.extend(references.stages());
        }
    }
    needed
}

fn declared_build_args(
    options: &Options,
    global_args: &[Parsed],
    drafts: &[Draft],
) -> BTreeMap<String, String> {
    let declared: BTreeSet<&str> = global_args
        .iter()
        .chain(drafts.iter().flat_map(|draft| draft.body.iter()))
        .filter_map(|parsed| match &parsed.syntax {
            Syntax::Arg(declarations) => Some(declarations),
            _ => None,
        })
        .flatten()
        .map(|(name, _)| name.as_str())
        .collect();
    let mut used = BTreeMap::new();
    for (name, value) in &options.build_args {
        // Proxy variables and SOURCE_DATE_EPOCH have an effect without an ARG.
        if declared.contains(name.as_str())
            || crate::is_proxy_arg(name)
            || name == "SOURCE_DATE_EPOCH"
        {
            used.insert(name.clone(), value.clone());
        } else {
            tracing::warn!("build arg {name} is not declared by any ARG and has no effect");
        }
    }
    used
}

/// Lexically cleans an absolute path (`/a/./b/../c` is `/a/c`); `..` cannot climb above `/`.
/// A path that is already clean (most are) is returned as it is.
fn clean_absolute(path: String) -> String {
    let already_clean = path.starts_with('/')
        && (path == "/" || !path.ends_with('/'))
        && !path[1..]
            .split('/')
            .any(|component| matches!(component, "" | "." | ".."));
    if already_clean {
        return path;
    }
    let mut cleaned = String::with_capacity(path.len());
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                let parent_end = cleaned.rfind('/').unwrap_or(0);
                cleaned.truncate(parent_end);
            }
            other => {
                cleaned.push('/');
                cleaned.push_str(other);
            }
        }
    }
    if cleaned.is_empty() {
        cleaned.push('/');
    }
    cleaned
}

/// `path` made absolute against `workdir`, and cleaned.
pub(crate) fn resolve_path(workdir: &str, path: &str) -> String {
    if path.starts_with('/') {
        clean_absolute(path.to_string())
    } else {
        clean_absolute(format!("{workdir}/{path}"))
    }
}

/// A COPY destination made absolute; a trailing `/` (or `.`) means "into this directory" and
/// is kept as a trailing `/`.
fn copy_destination(workdir: &str, destination: &str) -> String {
    let destination = if destination.is_empty() {
        "."
    } else {
        destination
    };
    let mut resolved = resolve_path(workdir, destination);
    let into_directory =
        destination.ends_with('/') || destination == "." || destination.ends_with("/.");
    if into_directory && !resolved.ends_with('/') {
        resolved.push('/');
    }
    resolved
}

fn is_http_url(source: &str) -> bool {
    starts_with_ignoring_case(source, "http://") || starts_with_ignoring_case(source, "https://")
}

fn starts_with_ignoring_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

/// Git sources as BuildKit recognises them: `git@host:...`, `git://`, `ssh://`, a
/// `github.com/` path, or an HTTP(S) URL whose path ends in `.git` (before any `#ref`).
fn is_git_url(source: &str) -> bool {
    let without_fragment = source.split('#').next().unwrap_or_default();
    let path = without_fragment.trim_end_matches('/');
    ["git@", "git://", "ssh://", "github.com/"]
        .iter()
        .any(|prefix| starts_with_ignoring_case(source, prefix))
        || (is_http_url(source)
            && path
                .get(path.len().saturating_sub(4)..)
                .is_some_and(|end| end.eq_ignore_ascii_case(".git")))
}

/// ADD takes URLs (downloaded, not unpacked; mb-hash skips them) and local archives (unpacked)
/// besides what COPY takes; git sources wait. COPY takes no URLs at all.
fn check_sources(add: bool, sources: &[String]) -> Result<(), String> {
    for source in sources {
        if !add && (is_http_url(source) || is_git_url(source)) {
            return Err(format!("COPY cannot take a URL (`{source}`): use ADD"));
        }
        if add && is_git_url(source) {
            return Err(format!(
                "ADD of a git repository (`{source}`) is not supported yet"
            ));
        }
    }
    Ok(())
}

/// `--checksum=<algorithm>:<hex>` for ADD of HTTP(S) sources only, as BuildKit checks it.
fn check_checksum(checksum: String, sources: &[String]) -> Result<String, String> {
    let valid = checksum.split_once(':').is_some_and(|(algorithm, hex)| {
        let length = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return false,
        };
        hex.len() == length
            && hex
                .bytes()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
    });
    if !valid {
        return Err(format!(
            "invalid --checksum `{checksum}`: expected sha256: and 64 lowercase hex digits (or sha384:, sha512:)"
        ));
    }
    if let Some(source) = sources.iter().find(|source| !is_http_url(source)) {
        return Err(format!(
            "ADD --checksum is only for HTTP(S) sources, not `{source}`"
        ));
    }
    Ok(checksum)
}

/// Linux signal names without `SIG`, as moby's `signal.ParseSignal` (which BuildKit's
/// STOPSIGNAL calls) knows them; `RTMIN+n` and `RTMAX-n` are checked apart.
const SIGNAL_NAMES: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN", "RTMAX",
];

/// A STOPSIGNAL value as moby's `signal.ParseSignal` takes it: a number from 1 to 64 (SIGRTMAX
/// on Linux), or a name in any case with or without `SIG` (`SIGTERM`, `term`, `RTMIN+3`).
fn is_signal(text: &str) -> bool {
    if let Ok(number) = text.parse::<i64>() {
        return (1..=64).contains(&number);
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let realtime = |prefix: &str, sign: char| {
        name.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix(sign))
            .and_then(|offset| offset.parse::<u8>().ok())
            .is_some_and(|offset| (1..=if sign == '+' { 15 } else { 14 }).contains(&offset))
    };
    SIGNAL_NAMES.contains(&name) || realtime("RTMIN", '+') || realtime("RTMAX", '-')
}

/// `port[-port][/proto]`, a range giving one entry per port, as Docker records them.
fn parse_port(spec: &str) -> Result<Vec<String>, String> {
    let invalid = || format!("invalid port `{spec}`: expected port[-port][/tcp|udp|sctp]");
    let (ports, protocol) = match spec.split_once('/') {
        Some((ports, protocol)) => (ports, protocol),
        None => (spec, "tcp"),
    };
    let Some(protocol) = ["tcp", "udp", "sctp"]
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(protocol))
    else {
        return Err(invalid());
    };
    let number = |text: &str| text.parse::<u16>().ok().filter(|port| *port != 0);
    let (first, last) = match ports.split_once('-') {
        Some((first, last)) => (number(first), number(last)),
        None => (number(ports), number(ports)),
    };
    match (first, last) {
        (Some(first), Some(last)) if first <= last => Ok((first..=last)
            .map(|port| format!("{port}/{protocol}"))
            .collect()),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Base images by reference, remembering which were asked for.
    #[derive(Default)]
    struct Images {
        configs: HashMap<String, ImageConfig>,
        asked: Vec<String>,
    }

    impl BaseImages for Images {
        fn config(&mut self, reference: &str) -> Option<ImageConfig> {
            self.asked.push(reference.to_string());
            self.configs.get(reference).cloned()
        }
    }

    fn options() -> Options {
        Options {
            file: "Dockerfile".into(),
            build_args: BTreeMap::new(),
            target: None,
            platform: Platform {
                os: "linux".into(),
                architecture: "amd64".into(),
                variant: None,
            },
            build_platform: Platform {
                os: "linux".into(),
                architecture: "arm64".into(),
                variant: None,
            },
            all_stages: false,
        }
    }

    fn graph_with(text: &str, options: &Options, images: &mut Images) -> Graph {
        match build_graph(text, options, images) {
            Ok(graph) => graph,
            Err(problems) => panic!("{problems:#?}"),
        }
    }

    fn graph(text: &str) -> Graph {
        graph_with(text, &options(), &mut Images::default())
    }

    fn problems(text: &str, options: &Options) -> Vec<(Option<u32>, String)> {
        match build_graph(text, options, &mut Images::default()) {
            Ok(graph) => panic!("expected problems, got {graph:#?}"),
            Err(problems) => problems.into_iter().map(|p| (p.line, p.message)).collect(),
        }
    }

    fn ops(graph: &Graph) -> Vec<&Op> {
        graph
            .stages
            .last()
            .map(|stage| stage.instructions.iter().map(|i| &i.op).collect())
            .unwrap_or_default()
    }

    fn env_op(graph: &Graph, position: usize) -> Vec<(String, String)> {
        match ops(graph).get(position) {
            Some(Op::Env { vars }) => vars
                .iter()
                .map(|var| (var.name.clone(), var.value.clone()))
                .collect(),
            other => panic!("not an ENV: {other:?}"),
        }
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    fn run_args_env(op: Option<&&Op>) -> Vec<(String, String)> {
        match op {
            Some(Op::Run { args_env, .. }) => args_env
                .iter()
                .map(|var| (var.name.clone(), var.value.clone()))
                .collect(),
            other => panic!("not a RUN: {other:?}"),
        }
    }

    #[test]
    fn global_args_reach_only_from_lines_unless_redeclared() {
        let text = "ARG V=1.0\nARG IMG=alpine:$V\nFROM $IMG\nENV A=$V\nARG V\nENV B=$V\n";
        let graph = graph(text);
        assert_eq!(
            graph.stages[0].base,
            Base::Image {
                reference: "docker.io/library/alpine:1.0".into()
            }
        );
        assert_eq!(env_op(&graph, 0), pairs(&[("A", "")]));
        assert_eq!(env_op(&graph, 2), pairs(&[("B", "1.0")]));
    }

    #[test]
    fn build_args_override_defaults_and_globals() {
        let mut options = options();
        options.build_args.insert("V".into(), "2".into());
        options.build_args.insert("LOCAL".into(), "given".into());
        options.build_args.insert("NOBODY".into(), "x".into());
        let text = "ARG V=1\nFROM alpine:$V\nARG LOCAL=default\nARG V\nRUN true\n";
        let graph = graph_with(text, &options, &mut Images::default());
        assert_eq!(
            graph.stages[0].base,
            Base::Image {
                reference: "docker.io/library/alpine:2".into()
            }
        );
        assert_eq!(
            run_args_env(ops(&graph).get(2)),
            pairs(&[("LOCAL", "given"), ("V", "2")])
        );
        assert_eq!(
            graph.build_args.keys().collect::<Vec<_>>(),
            ["LOCAL", "V"],
            "NOBODY is declared by no ARG"
        );
    }

    #[test]
    fn words_of_one_instruction_see_the_env_from_before_it() {
        let graph = graph("FROM scratch\nENV a=old\nENV a=new b=$a\nENV c=$a\n");
        assert_eq!(env_op(&graph, 1), pairs(&[("a", "new"), ("b", "old")]));
        assert_eq!(env_op(&graph, 2), pairs(&[("c", "new")]));
    }

    #[test]
    fn env_wins_over_an_arg_of_the_same_name() {
        let text = "FROM scratch\nENV X=env\nARG X=arg\nARG Y=y\nENV Z=$X\nRUN echo $X\n";
        let graph = graph(text);
        assert_eq!(env_op(&graph, 3), pairs(&[("Z", "env")]));
        assert_eq!(run_args_env(ops(&graph).get(4)), pairs(&[("Y", "y")]));
    }

    #[test]
    fn run_cmd_and_entrypoint_bodies_are_not_expanded() {
        let graph = graph("FROM scratch\nENV A=1\nRUN echo $A\nCMD echo $A\nENTRYPOINT [\"$A\"]\n");
        let ops = ops(&graph);
        assert!(
            matches!(ops[1], Op::Run { command: Command::Shell { script, .. }, .. } if script == "echo $A")
        );
        assert!(
            matches!(ops[2], Op::Cmd { command: Command::Shell { script, .. } } if script == "echo $A")
        );
        assert!(
            matches!(ops[3], Op::Entrypoint { command: Command::Exec { args } } if args == &["$A"])
        );
    }

    #[test]
    fn base_image_env_seeds_expansion() {
        let mut images = Images::default();
        let mut config = ImageConfig::default();
        config.set_env("PATH", "/opt/bin:/bin");
        config.working_dir = Some("/base".into());
        config.shell = Some(vec!["/bin/bash".into(), "-c".into()]);
        images
            .configs
            .insert("docker.io/library/tool:1".into(), config);
        let text = "FROM tool:1\nENV PATH=/app:$PATH\nWORKDIR sub\nRUN x\n";
        let graph = graph_with(text, &options(), &mut images);
        assert_eq!(env_op(&graph, 0), pairs(&[("PATH", "/app:/opt/bin:/bin")]));
        let ops = ops(&graph);
        assert_eq!(
            ops[1],
            &Op::Workdir {
                path: "/base/sub".into()
            }
        );
        assert!(
            matches!(ops[2], Op::Run { command: Command::Shell { shell, .. }, .. } if shell[0] == "/bin/bash")
        );
    }

    #[test]
    fn absent_base_image_gets_the_default_path() {
        let graph = graph("FROM nothere\nENV PATH=/app:$PATH\n");
        assert_eq!(
            env_op(&graph, 0),
            pairs(&[("PATH", &format!("/app:{}", mb_core::image::DEFAULT_PATH))])
        );
    }

    #[test]
    fn a_stage_inherits_env_args_workdir_and_shell_from_its_base_stage() {
        let text = "FROM scratch AS base\nARG A=1\nENV E=2\nWORKDIR /w\nSHELL [\"/bin/bash\", \"-c\"]\nFROM base\nENV F=$E$A\nCOPY x y\nRUN z\n";
        let graph = graph(text);
        assert_eq!(graph.stages[1].base, Base::Stage { index: 0 });
        assert_eq!(env_op(&graph, 0), pairs(&[("F", "21")]));
        let ops = ops(&graph);
        assert!(matches!(ops[1], Op::Copy { destination, .. } if destination == "/w/y"));
        assert!(
            matches!(ops[2], Op::Run { command: Command::Shell { shell, .. }, args_env, .. }
            if shell[0] == "/bin/bash" && args_env.len() == 1)
        );
    }

    #[test]
    fn workdir_and_copy_destinations() {
        let text = "FROM scratch\nWORKDIR /a\nWORKDIR b/../c\nCOPY x .\nCOPY x d/\nCOPY x /e/./f\nCOPY x ../g\nCOPY [\"x\", \"y\", \"/\"]\n";
        let graph = graph(text);
        let destinations: Vec<&str> = ops(&graph)
            .iter()
            .filter_map(|op| match op {
                Op::Copy { destination, .. } => Some(destination.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(destinations, ["/a/c/", "/a/c/d/", "/e/f", "/a/g", "/"]);
        assert_eq!(
            ops(&graph)[1],
            &Op::Workdir {
                path: "/a/c".into()
            }
        );
    }

    #[test]
    fn copy_expands_sources_destination_and_ownership() {
        let text = "FROM scratch\nARG U=app\nENV SRC=src DST=/dst\nCOPY --chown=$U:$U --chmod=755 $SRC/a \"${SRC}/b\"c $DST/\n";
        let graph = graph(text);
        assert_eq!(
            ops(&graph)[2],
            &Op::Copy {
                add: false,
                from: CopyFrom::Context,
                sources: vec!["src/a".into(), "src/bc".into()],
                destination: "/dst/".into(),
                chown: Some("app:app".into()),
                chmod: Some("755".into()),
                link: false,
                checksum: None,
            }
        );
        let instruction = &graph.stages[0].instructions[2];
        assert_eq!(instruction.flags[0].value.as_deref(), Some("$U:$U"));
        assert_eq!(instruction.arguments, "$SRC/a \"${SRC}/b\"c $DST/");
    }

    #[test]
    fn copy_from_names_indexes_and_images() {
        let text = "FROM scratch AS one\nFROM scratch\nCOPY --from=ONE a b\nCOPY --from=0 a b\nCOPY --from=busybox:1 a b\n";
        let graph = graph(text);
        let froms: Vec<&CopyFrom> = ops(&graph)
            .iter()
            .filter_map(|op| match op {
                Op::Copy { from, .. } => Some(from),
                _ => None,
            })
            .collect();
        assert_eq!(
            froms,
            [
                &CopyFrom::Stage { index: 0 },
                &CopyFrom::Stage { index: 0 },
                &CopyFrom::Image {
                    reference: "docker.io/library/busybox:1".into()
                }
            ]
        );
    }

    #[test]
    fn only_the_stages_the_target_needs_are_kept() {
        let text = "FROM a AS deps\nFROM b AS unused\nFROM scratch AS build\nCOPY --from=deps x y\nFROM build AS final\nFROM c AS other\n";
        let mut options = options();
        options.target = Some("Final".into());
        let mut images = Images::default();
        let graph = graph_with(text, &options, &mut images);
        assert_eq!(graph.target, 3);
        let kept: Vec<usize> = graph.stages.iter().map(|stage| stage.index).collect();
        assert_eq!(kept, [0, 2, 3]);
        assert_eq!(images.asked, ["docker.io/library/a:latest"]);
        let default_target = graph_with(text, &super::tests::options(), &mut Images::default());
        assert_eq!(default_target.target, 4);
        assert_eq!(default_target.stages.len(), 1);
    }

    #[test]
    fn predefined_platform_args() {
        let mut options = options();
        options.platform = Platform {
            os: "linux".into(),
            architecture: "arm".into(),
            variant: Some("v7".into()),
        };
        let text = "FROM --platform=$TARGETPLATFORM scratch\nENV NONE=$TARGETARCH\nARG TARGETPLATFORM TARGETARCH TARGETVARIANT BUILDPLATFORM\nENV P=$TARGETPLATFORM A=$TARGETARCH V=$TARGETVARIANT B=$BUILDPLATFORM\n";
        let graph = graph_with(text, &options, &mut Images::default());
        assert_eq!(env_op(&graph, 0), pairs(&[("NONE", "")]));
        assert_eq!(
            env_op(&graph, 2),
            pairs(&[
                ("P", "linux/arm/v7"),
                ("A", "arm"),
                ("V", "v7"),
                ("B", "linux/arm64")
            ])
        );
    }

    #[test]
    fn labels_expose_volume_user_stopsignal() {
        let text = "FROM scratch\nENV P=80 N=web\nLABEL \"app.name\"=$N version=\"1 0\"\nEXPOSE $P 53/UDP 8000-8002/tcp\nVOLUME [\"/data\", \"/$N\"]\nUSER $N:$N\nSTOPSIGNAL SIGTERM\n";
        let graph = graph(text);
        let ops = ops(&graph);
        let name_value = |name: &str, value: &str| NameValue {
            name: name.into(),
            value: value.into(),
        };
        assert_eq!(
            ops[1],
            &Op::Label {
                labels: vec![name_value("app.name", "web"), name_value("version", "1 0")]
            }
        );
        assert_eq!(
            ops[2],
            &Op::Expose {
                ports: ["80/tcp", "53/udp", "8000/tcp", "8001/tcp", "8002/tcp"]
                    .map(String::from)
                    .to_vec()
            }
        );
        assert_eq!(
            ops[3],
            &Op::Volume {
                paths: vec!["/data".into(), "/web".into()]
            }
        );
        assert_eq!(
            ops[4],
            &Op::User {
                user: "web:web".into()
            }
        );
        assert_eq!(
            ops[5],
            &Op::StopSignal {
                signal: "SIGTERM".into()
            }
        );
    }

    #[test]
    fn copy_heredocs_are_expanded_unless_quoted() {
        let text =
            "FROM scratch\nARG NAME=world\nCOPY <<A <<'B' /etc/\nhello $NAME\nA\nraw $NAME\nB\n";
        let graph = graph(text);
        let heredocs = &graph.stages[0].instructions[1].heredocs;
        assert_eq!(heredocs[0].body, "hello world\n");
        assert_eq!(heredocs[1].body, "raw $NAME\n");
        assert!(heredocs.iter().all(|heredoc| !heredoc.expand));
        assert_eq!(graph.stages[0].instructions[1].location.end_line, 7);
    }

    #[test]
    fn structural_errors() {
        let options = options();
        let cases: &[(&str, Option<u32>, &str)] = &[
            ("", None, "no instructions"),
            ("# only\n\n# comments\n", None, "no instructions"),
            ("ARG A\n", None, "no FROM"),
            ("RUN x\nFROM a\n", Some(1), "RUN before the first FROM"),
            ("FROM a AS 1x\n", Some(1), "invalid stage name `1x`"),
            (
                "FROM a AS x\nFROM b AS X\n",
                Some(2),
                "duplicate stage name `X`",
            ),
            (
                "FROM later\nFROM a AS later\n",
                Some(1),
                "used before it is defined",
            ),
            (
                "FROM a\nCOPY --from=later a b\nFROM b AS later\n",
                Some(2),
                "used before it is defined",
            ),
            (
                "FROM a\nCOPY --from=1 a b\n",
                Some(2),
                "current or a later stage",
            ),
            (
                "FROM a\nCOPY --from=0 a b\n",
                Some(2),
                "circular dependency detected on stage: stage-0",
            ),
            (
                "FROM a AS Build\nCOPY --from=build a b\n",
                Some(2),
                "circular dependency detected on stage: build",
            ),
            (
                "FROM b AS a\nFROM a AS b\n",
                Some(1),
                "circular dependency detected on stage: a",
            ),
            (
                "FROM scratch AS a\nCOPY --from=c x y\nFROM scratch AS b\nCOPY --from=a x y\nFROM scratch AS c\nCOPY --from=b x y\n",
                Some(2),
                "circular dependency detected on stage: a",
            ),
            (
                "FROM a\nCOPY --from=$X a b\n",
                Some(2),
                "not expanded in --from",
            ),
            ("FROM a\nENV X=${Y:?required}\n", Some(2), "Y: required"),
            ("FROM a\nEXPOSE 80/ftp\n", Some(2), "invalid port `80/ftp`"),
            ("FROM a\nEXPOSE 0\n", Some(2), "invalid port"),
            (
                "FROM a\nRUN --network=bridge x\n",
                Some(2),
                "invalid --network",
            ),
            (
                "FROM a\nADD git@github.com:x/y.git /src\n",
                Some(2),
                "ADD of a git repository",
            ),
            (
                "FROM a\nADD https://github.com/x/y.git#main /src\n",
                Some(2),
                "ADD of a git repository",
            ),
            ("FROM a\nCOPY https://x/y.txt /\n", Some(2), "use ADD"),
            (
                "FROM a\nADD --checksum=sha256:abc https://x/y /\n",
                Some(2),
                "invalid --checksum",
            ),
            (
                "FROM a\nADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 y /\n",
                Some(2),
                "only for HTTP(S) sources",
            ),
            ("FROM --platform=linux a\n", Some(1), "invalid --platform"),
            (
                "FROM a\nRUN --mount=from=later,target=/x y\nFROM b AS later\n",
                Some(2),
                "used before it is defined",
            ),
            (
                "FROM a\nRUN --mount=type=cache,target=/x,sharing=$S y\n",
                Some(2),
                "invalid sharing ``",
            ),
            ("FROM Bad/Name\n", Some(1), "invalid image reference"),
            (
                "FROM a\nARG M=bogus\nCOPY --chmod=$M a /b\n",
                Some(3),
                "invalid --chmod `bogus`",
            ),
            ("FROM a\nADD --chmod=10000 a /b\n", Some(2), "invalid --chmod `10000`"),
            (
                "FROM a\nSTOPSIGNAL SIGBOGUS\n",
                Some(2),
                "STOPSIGNAL `SIGBOGUS` is not a signal",
            ),
            ("FROM a\nSTOPSIGNAL 0\n", Some(2), "STOPSIGNAL `0` is not a signal"),
        ];
        for (text, line, expected) in cases {
            let found = problems(text, &options);
            assert_eq!(found.len(), 1, "{text:?}: {found:?}");
            assert_eq!(found[0].0, *line, "{text:?}");
            assert!(found[0].1.contains(expected), "{text:?}: {found:?}");
        }
    }

    #[test]
    fn a_from_naming_its_own_stage_is_the_image() {
        let graph = graph("FROM alpine AS alpine\nRUN true\nFROM alpine\n");
        let bases: Vec<&Base> = graph.stages.iter().map(|stage| &stage.base).collect();
        let image = Base::Image {
            reference: "docker.io/library/alpine:latest".into(),
        };
        assert_eq!(
            bases,
            [&image, &Base::Stage { index: 0 }],
            "a later FROM alpine is the stage"
        );
    }

    #[test]
    fn stop_signals_follow_moby_parse_signal() {
        for signal in [
            "SIGTERM",
            "TERM",
            "sigkill",
            "Quit",
            "9",
            "64",
            "SIGRTMIN+3",
            "RTMAX-14",
        ] {
            assert!(is_signal(signal), "{signal}");
        }
        for signal in [
            "", "0", "65", "-1", "SIGBOGUS", "SIG", "RTMIN+16", "RTMAX-0", "TERM ",
        ] {
            assert!(!is_signal(signal), "{signal}");
        }
    }

    #[test]
    fn problems_after_a_lexer_problem_are_listed_too() {
        let text = "# escape=x\nFROM a\nRUNN x\nRUN <<EOF\nno end\n";
        let found = problems(text, &options());
        let lines: Vec<Option<u32>> = found.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [Some(1), Some(3), Some(4)], "{found:?}");
        assert!(found[0].1.contains("invalid escape character"));
        assert!(found[1].1.contains("unknown instruction `RUNN`"));
        assert!(found[2].1.contains("unterminated heredoc"));
    }

    #[test]
    fn unknown_target_names_the_stages() {
        let mut options = options();
        options.target = Some("nope".into());
        let found = problems("FROM a AS one\nFROM b AS two\n", &options);
        assert_eq!(
            found,
            [(
                None,
                "--target nope: no stage has that name (named stages: one, two)".to_string()
            )]
        );
    }

    #[test]
    fn several_problems_are_reported_in_line_order() {
        let text = "FROM a\nRUNN x\nENV\nCOPY --bad a b\nUSER ${\n";
        let found = problems(text, &options());
        let lines: Vec<Option<u32>> = found.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [Some(2), Some(3), Some(4), Some(5)]);
    }

    #[test]
    fn platforms_parse_with_aliases() {
        let platform = parse_platform("linux/x86_64");
        assert_eq!(
            platform.map(|p| p.display()).as_deref(),
            Some("linux/amd64")
        );
        assert_eq!(
            parse_platform("linux/arm64/v8").map(|p| p.variant),
            Some(None)
        );
        assert_eq!(
            parse_platform("linux/arm/v6")
                .and_then(|p| p.variant)
                .as_deref(),
            Some("v6")
        );
        assert!(parse_platform("linux").is_none());
        assert!(parse_platform("linux/").is_none());
    }

    #[test]
    // How fast is the criterion bench's business (benches/parse.rs); this checks the result.
    fn ten_thousand_instructions_keep_their_lines_and_expansions() {
        let mut text = String::from("FROM scratch\nARG A=1\n");
        for index in 0..10_000 {
            text.push_str(&format!("ENV V{index}=$A \\\n  W=x\nRUN echo {index}\n"));
        }
        let graph = graph(&text);
        let instructions = &graph.stages[0].instructions;
        assert_eq!(instructions.len(), 20_001);
        let last_env = &instructions[19_999];
        assert_eq!(
            (last_env.location.line, last_env.location.end_line),
            (30_000, 30_001)
        );
        let Op::Env { vars } = &last_env.op else {
            panic!("not an ENV: {last_env:?}");
        };
        assert_eq!(
            (vars[0].name.as_str(), vars[0].value.as_str()),
            ("V9999", "1")
        );
    }

    #[test]
    fn run_mounts_are_typed_expanded_and_keep_their_stages() {
        let text = "FROM scratch AS deps\nFROM scratch AS unused\nFROM scratch AS tools\nFROM alpine\nARG CACHE=/root/.cache\nWORKDIR /src\nRUN --mount=type=cache,target=$CACHE --mount=from=deps,source=/x,target=x --mount=type=bind,from=tools,target=/t --mount=type=secret,id=npmrc --mount=type=ssh --mount=type=ssh,id=other make\n";
        let graph = graph(text);
        let kept: Vec<usize> = graph.stages.iter().map(|stage| stage.index).collect();
        assert_eq!(
            kept,
            [0, 2, 3],
            "mount from= keeps deps and tools, not unused"
        );
        let Some(Op::Run { mounts, .. }) = ops(&graph).get(2).copied() else {
            panic!("not a RUN");
        };
        let summary: Vec<(&str, Option<&CopyFrom>, Option<&str>)> = mounts
            .iter()
            .map(|mount| {
                (
                    mount.target.as_str(),
                    mount.from.as_ref(),
                    mount.id.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("/root/.cache", None, Some("/root/.cache")),
                ("/src/x", Some(&CopyFrom::Stage { index: 0 }), None),
                ("/t", Some(&CopyFrom::Stage { index: 2 }), None),
                ("/run/secrets/npmrc", None, Some("npmrc")),
                ("/run/buildkit/ssh_agent.0", None, Some("default")),
                ("/run/buildkit/ssh_agent.1", None, Some("other")),
            ]
        );
    }

    #[test]
    fn onbuild_triggers_of_the_base_image_run_first() {
        let mut images = Images::default();
        let mut config = ImageConfig::default();
        config.other.insert(
            ONBUILD_FIELD.into(),
            serde_json::json!([
                "ARG WHO=base",
                "COPY . /app",
                "RUN echo $WHO",
                "RUN <<EOF\necho hi\nEOF"
            ]),
        );
        images
            .configs
            .insert("docker.io/library/onbuilder:1".into(), config);
        let text = "FROM scratch AS s\nFROM onbuilder:1\nONBUILD RUN echo child\nENV E=$WHO\n";
        let graph = graph_with(text, &options(), &mut images);
        let stage = &graph.stages[0];
        let keywords: Vec<(&str, u32)> = stage
            .instructions
            .iter()
            .map(|i| (i.keyword.as_str(), i.location.line))
            .collect();
        assert_eq!(
            keywords,
            [
                ("ARG", 2),
                ("COPY", 2),
                ("RUN", 2),
                ("RUN", 2),
                ("ONBUILD", 3),
                ("ENV", 4)
            ]
        );
        assert_eq!(env_op(&graph, 5), pairs(&[("E", "base")]));
        assert!(
            matches!(&stage.instructions[3].op, Op::Run { command: Command::Shell { script, .. }, .. } if script == "echo hi\n")
        );
        assert_eq!(
            stage.instructions[4].op,
            Op::Onbuild {
                trigger: "RUN echo child".into()
            }
        );
    }

    #[test]
    fn onbuild_triggers_of_a_base_stage_run_first_and_only_once() {
        let text = "FROM scratch AS base\nARG WHO=parent\nONBUILD RUN echo $WHO\nONBUILD COPY <<EOF /who\n$WHO\nEOF\nRUN base\nFROM base AS child\nONBUILD RUN echo child\nRUN own\nFROM child\nRUN last\n";
        let graph = graph(text);
        let summary = |stage: &Stage| -> Vec<(String, u32)> {
            stage
                .instructions
                .iter()
                .map(|i| (format!("{} {}", i.keyword, i.arguments), i.location.line))
                .collect()
        };
        let expected = |rows: &[(&str, u32)]| -> Vec<(String, u32)> {
            rows.iter()
                .map(|(text, line)| (text.to_string(), *line))
                .collect()
        };
        assert_eq!(
            summary(&graph.stages[1]),
            expected(&[
                ("RUN echo $WHO", 8),
                ("COPY <<EOF /who", 8),
                ("ONBUILD RUN echo child", 9),
                ("RUN own", 10),
            ])
        );
        assert_eq!(
            graph.stages[1].instructions[1].heredocs[0].body, "parent\n",
            "triggers see the scope the child inherits"
        );
        assert_eq!(
            summary(&graph.stages[2]),
            expected(&[("RUN echo child", 11), ("RUN last", 12)]),
            "the grandchild runs the child's triggers, not the base's again"
        );
        assert_eq!(
            summary(&graph.stages[0]),
            expected(&[
                ("ARG WHO=parent", 2),
                ("ONBUILD RUN echo $WHO", 3),
                ("ONBUILD COPY <<EOF /who", 4),
                ("RUN base", 7),
            ]),
            "the base stage does not run its own triggers"
        );
    }

    #[test]
    fn stages_that_base_stage_triggers_read_are_kept() {
        let text = "FROM scratch AS deps\nFROM scratch AS unused\nFROM scratch AS base\nONBUILD COPY --from=deps /x /x\nONBUILD RUN --mount=from=1,target=/m true\nFROM base\n";
        let graph = graph(text);
        let kept: Vec<usize> = graph.stages.iter().map(|stage| stage.index).collect();
        assert_eq!(kept, [0, 1, 2, 3]);
        let mut options = options();
        options.target = Some("base".into());
        let only_base = graph_with(text, &options, &mut Images::default());
        let kept: Vec<usize> = only_base.stages.iter().map(|stage| stage.index).collect();
        assert_eq!(kept, [2], "triggers read stages only where they run");
        let child = graph.stages.iter().find(|stage| stage.index == 3);
        let ops: Vec<&Op> = child
            .map(|stage| stage.instructions.iter().map(|i| &i.op).collect())
            .unwrap_or_default();
        assert!(
            matches!(
                ops.first(),
                Some(Op::Copy {
                    from: CopyFrom::Stage { index: 0 },
                    ..
                })
            ),
            "{ops:?}"
        );
        assert!(
            matches!(ops.get(1), Some(Op::Run { mounts, .. }) if mounts[0].from == Some(CopyFrom::Stage { index: 1 })),
            "{ops:?}"
        );
    }

    #[test]
    fn base_stage_triggers_that_read_a_later_stage_are_reported_on_the_from_line() {
        let text = "FROM scratch AS base\nONBUILD COPY --from=later a b\nFROM base\nFROM scratch AS later\n";
        let mut options = options();
        options.all_stages = true;
        assert_eq!(
            problems(text, &options),
            [(
                Some(3),
                "ONBUILD trigger of stage `base`: stage `later` is used before it is defined"
                    .to_string()
            )]
        );
    }

    #[test]
    fn bad_onbuild_triggers_are_reported_on_the_from_line() {
        let mut images = Images::default();
        let mut config = ImageConfig::default();
        config.other.insert(
            ONBUILD_FIELD.into(),
            serde_json::json!(["FROM x", "RUNN y", 3]),
        );
        images
            .configs
            .insert("docker.io/library/bad:1".into(), config);
        let found = match build_graph("ARG A\nFROM bad:1\n", &options(), &mut images) {
            Ok(graph) => panic!("{graph:?}"),
            Err(problems) => problems,
        };
        let messages: Vec<(Option<u32>, &str)> =
            found.iter().map(|p| (p.line, p.message.as_str())).collect();
        assert_eq!(
            messages,
            [
                (
                    Some(2),
                    "ONBUILD trigger of the base image: `3` is not an instruction"
                ),
                (
                    Some(2),
                    "ONBUILD trigger of the base image: FROM is not allowed as an ONBUILD trigger"
                ),
                (
                    Some(2),
                    "ONBUILD trigger of the base image: unknown instruction `RUNN`"
                ),
            ]
        );
    }

    #[test]
    fn healthcheck_link_checksum_and_urls() {
        let sum = "sha256:".to_string() + &"ab".repeat(32);
        let text = format!("FROM scratch\nHEALTHCHECK --retries=2 CMD [\"/check\"]\nCOPY --link a /a\nADD --checksum={sum} https://example.com/x.tgz /x/\nADD app.tar.gz /opt/\n");
        let graph = graph(&text);
        let ops = ops(&graph);
        assert_eq!(
            ops[0],
            &Op::Healthcheck {
                healthcheck: mb_core::graph::Healthcheck {
                    test: vec!["CMD".into(), "/check".into()],
                    interval: None,
                    timeout: None,
                    start_period: None,
                    start_interval: None,
                    retries: Some(2),
                }
            }
        );
        assert!(matches!(ops[1], Op::Copy { link: true, .. }));
        assert!(
            matches!(ops[2], Op::Copy { add: true, checksum: Some(c), sources, .. } if c == &sum && sources[0] == "https://example.com/x.tgz")
        );
        assert!(matches!(
            ops[3],
            Op::Copy {
                add: true,
                checksum: None,
                ..
            }
        ));
    }

    #[test]
    fn from_platform_is_recorded_with_global_args() {
        let text = "ARG ARCH=arm64\nFROM --platform=$BUILDPLATFORM scratch AS build\nFROM --platform=linux/$ARCH scratch\nCOPY --from=build a b\n";
        let graph = graph(text);
        let platforms: Vec<Option<String>> = graph
            .stages
            .iter()
            .map(|stage| stage.platform.as_ref().map(Platform::display))
            .collect();
        assert_eq!(
            platforms,
            [
                Some("linux/arm64".to_string()),
                Some("linux/arm64".to_string())
            ]
        );
        assert_eq!(
            super::tests::graph("FROM scratch\n").stages[0].platform,
            None
        );
    }

    #[test]
    fn proxy_args_and_source_date_epoch_need_no_arg() {
        let mut options = options();
        for (name, value) in [
            ("HTTP_PROXY", "http://proxy:3128"),
            ("no_proxy", "localhost"),
            ("SOURCE_DATE_EPOCH", "0"),
            ("UNDECLARED", "x"),
        ] {
            options.build_args.insert(name.into(), value.into());
        }
        let text = "FROM scratch\nRUN a\nARG no_proxy=declared\nENV HTTP_PROXY=env\nRUN b\n";
        let graph = graph_with(text, &options, &mut Images::default());
        assert_eq!(
            run_args_env(ops(&graph).first()),
            pairs(&[
                ("HTTP_PROXY", "http://proxy:3128"),
                ("no_proxy", "localhost")
            ])
        );
        assert_eq!(
            run_args_env(ops(&graph).get(3)),
            pairs(&[("no_proxy", "localhost")]),
            "ENV hides the proxy arg; the declared ARG takes the build arg"
        );
        assert_eq!(
            graph.build_args.keys().collect::<Vec<_>>(),
            ["HTTP_PROXY", "SOURCE_DATE_EPOCH", "no_proxy"]
        );
    }
}
