//! Tree ensembles scored in Rust: the `ai.onnx.ml` `TreeEnsembleClassifier` /
//! `TreeEnsembleRegressor` graphs that onnxmltools writes for LightGBM, read from the
//! ONNX bytes with a small protobuf wire reader into flat node arrays, scored many rows
//! per tree. ONNX Runtime stays the reference: [`runner`](super::runner) checks every
//! version against it at load and keeps ORT when this module says "not supported" or
//! disagrees.
//!
//! Semantics follow ONNX Runtime's CPU kernel for float inputs: per row, leaf weights
//! are summed in float32 in tree order, base values added last; binary classifiers with
//! one weight class give `[logistic(-s), logistic(s)]` (LOGISTIC) or `[-s, s]` (NONE);
//! more classes get SOFTMAX/LOGISTIC/NONE over the class sums.

use std::collections::{BTreeMap, HashMap};

/// Why a graph cannot be scored here, or a batch could not.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TreeError {
    /// The bytes are not a well-formed ONNX model.
    #[error("malformed ONNX model: {0}")]
    Malformed(String),
    /// A valid graph this evaluator does not handle (ORT scores it instead).
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The rows do not fit the model.
    #[error("bad input: {0}")]
    Input(String),
}

fn malformed(s: impl Into<String>) -> TreeError {
    TreeError::Malformed(s.into())
}
fn unsupported(s: impl Into<String>) -> TreeError {
    TreeError::Unsupported(s.into())
}

// ---------------------------------------------------------------- protobuf wire reader

struct Wire<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum Val<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Wire<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Wire { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, TreeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| malformed("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(malformed("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], TreeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| malformed("field runs past the end of its message"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next (field number, value), or None at the end.
    fn next(&mut self) -> Result<Option<(u64, Val<'a>)>, TreeError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let v = match key & 7 {
            0 => Val::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Val::Fixed64
            }
            2 => {
                let n = usize::try_from(self.varint()?)
                    .map_err(|_| malformed("length does not fit"))?;
                Val::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                Val::Fixed32(u32::from_le_bytes(a))
            }
            t => return Err(malformed(format!("unknown wire type {t}"))),
        };
        Ok(Some((key >> 3, v)))
    }
}

fn text(b: &[u8]) -> Result<String, TreeError> {
    String::from_utf8(b.to_vec()).map_err(|_| malformed("string field is not UTF-8"))
}

fn push_floats(v: Val<'_>, out: &mut Vec<f32>) -> Result<(), TreeError> {
    match v {
        Val::Fixed32(x) => out.push(f32::from_bits(x)),
        Val::Bytes(b) => {
            if b.len() % 4 != 0 {
                return Err(malformed("packed floats not a multiple of 4 bytes"));
            }
            out.extend(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        }
        _ => return Err(malformed("float field with a wrong wire type")),
    }
    Ok(())
}

fn push_ints(v: Val<'_>, out: &mut Vec<i64>) -> Result<(), TreeError> {
    match v {
        Val::Varint(x) => out.push(x as i64),
        Val::Bytes(b) => {
            let mut w = Wire::new(b);
            while w.pos < b.len() {
                out.push(w.varint()? as i64);
            }
        }
        _ => return Err(malformed("int field with a wrong wire type")),
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Attr {
    name: String,
    f: Option<f32>,
    i: Option<i64>,
    s: Option<String>,
    floats: Vec<f32>,
    ints: Vec<i64>,
    strings: Vec<String>,
    /// A tensor or graph valued attribute (not supported).
    other: bool,
}

#[derive(Debug, Default)]
struct Node {
    inputs: Vec<String>,
    outputs: Vec<String>,
    op_type: String,
    domain: String,
    attrs: Vec<Attr>,
}

#[derive(Debug, Default)]
struct Graph {
    nodes: Vec<Node>,
    /// Float initializers holding one value (the scalars onnxmltools multiplies by).
    scalars: HashMap<String, f32>,
}

fn parse_attr(b: &[u8]) -> Result<Attr, TreeError> {
    let mut a = Attr::default();
    let mut w = Wire::new(b);
    while let Some((field, v)) = w.next()? {
        match (field, v) {
            (1, Val::Bytes(s)) => a.name = text(s)?,
            (2, Val::Fixed32(x)) => a.f = Some(f32::from_bits(x)),
            (3, Val::Varint(x)) => a.i = Some(x as i64),
            (4, Val::Bytes(s)) => a.s = Some(text(s)?),
            (5 | 6 | 10 | 11 | 22 | 23, _) => a.other = true,
            (7, v) => push_floats(v, &mut a.floats)?,
            (8, v) => push_ints(v, &mut a.ints)?,
            (9, Val::Bytes(s)) => a.strings.push(text(s)?),
            _ => {}
        }
    }
    Ok(a)
}

fn parse_node(b: &[u8]) -> Result<Node, TreeError> {
    let mut n = Node::default();
    let mut w = Wire::new(b);
    while let Some((field, v)) = w.next()? {
        match (field, v) {
            (1, Val::Bytes(s)) => n.inputs.push(text(s)?),
            (2, Val::Bytes(s)) => n.outputs.push(text(s)?),
            (4, Val::Bytes(s)) => n.op_type = text(s)?,
            (5, Val::Bytes(s)) => n.attrs.push(parse_attr(s)?),
            (7, Val::Bytes(s)) => n.domain = text(s)?,
            _ => {}
        }
    }
    Ok(n)
}

/// A float initializer with exactly one value, as (name, value); None otherwise.
fn parse_scalar(b: &[u8]) -> Result<Option<(String, f32)>, TreeError> {
    let mut w = Wire::new(b);
    let (mut name, mut dtype, mut floats, mut raw, mut dims) =
        (String::new(), 0u64, Vec::new(), None, Vec::new());
    while let Some((field, v)) = w.next()? {
        match (field, v) {
            (1, v) => push_ints(v, &mut dims)?,
            (2, Val::Varint(x)) => dtype = x,
            (4, v) => push_floats(v, &mut floats)?,
            (8, Val::Bytes(s)) => name = text(s)?,
            (9, Val::Bytes(s)) => raw = Some(s),
            _ => {}
        }
    }
    if let Some(r) = raw {
        push_floats(Val::Bytes(r), &mut floats)?;
    }
    // data_type 1 is FLOAT.
    Ok(
        (dtype == 1 && floats.len() == 1 && dims.iter().all(|&d| d == 1))
            .then(|| (name, floats[0])),
    )
}

fn parse_graph(b: &[u8]) -> Result<Graph, TreeError> {
    let mut g = Graph::default();
    let mut w = Wire::new(b);
    while let Some((field, v)) = w.next()? {
        match (field, v) {
            (1, Val::Bytes(s)) => g.nodes.push(parse_node(s)?),
            (5, Val::Bytes(s)) => {
                if let Some((name, x)) = parse_scalar(s)? {
                    g.scalars.insert(name, x);
                }
            }
            _ => {}
        }
    }
    Ok(g)
}

fn parse_model(b: &[u8]) -> Result<Graph, TreeError> {
    let mut w = Wire::new(b);
    let mut graph = None;
    while let Some((field, v)) = w.next()? {
        if let (7, Val::Bytes(s)) = (field, v) {
            graph = Some(parse_graph(s)?);
        }
    }
    graph.ok_or_else(|| malformed("ModelProto has no graph"))
}

// ---------------------------------------------------------------- flat ensemble

/// Node comparison modes as ONNX defines them (`x` against the threshold; true goes to
/// the true branch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Leq = 0,
    Lt = 1,
    Gte = 2,
    Gt = 3,
    Eq = 4,
    Neq = 5,
}

/// A child reference with this bit set is a leaf index.
const LEAF: u32 = 1 << 31;
const MODE_SHIFT: u32 = 28;
const MISSING_TRUE: u32 = 1 << 31;
const FEATURE_MASK: u32 = (1 << MODE_SHIFT) - 1;

/// One split, 16 bytes: `meta` holds the feature index (low 28 bits), the mode
/// (bits 28–30) and "missing goes to the true branch" (bit 31).
#[derive(Debug, Clone, Copy)]
struct Split {
    threshold: f32,
    meta: u32,
    yes: u32,
    no: u32,
}

#[inline(always)]
fn decide(s: &Split, row: &[f32]) -> bool {
    let x = row[(s.meta & FEATURE_MASK) as usize];
    let t = s.threshold;
    // As ONNX Runtime: the comparison (false for NaN, but true for NEQ), or NaN when
    // missing values go to the true branch.
    let c = match (s.meta >> MODE_SHIFT) & 7 {
        0 => x <= t,
        1 => x < t,
        2 => x >= t,
        3 => x > t,
        4 => x == t,
        _ => x != t,
    };
    c || (s.meta & MISSING_TRUE != 0 && x.is_nan())
}

/// The output transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Post {
    None,
    Logistic,
    Softmax,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Two classes, one weight class: output `[f(-s), f(s)]`.
    Binary,
    /// `width` classes or targets, one sum each.
    PerColumn,
}

/// One `TreeEnsemble*` node, flattened.
#[derive(Debug, Clone)]
struct Ensemble {
    splits: Vec<Split>,
    roots: Vec<u32>,
    /// Leaf `i` adds `leaf_weights[leaf_start[i]..leaf_start[i+1]]` to the columns
    /// `leaf_cols[..]`.
    leaf_start: Vec<u32>,
    leaf_cols: Vec<u32>,
    leaf_weights: Vec<f32>,
    /// Columns of the raw sums (1 for Binary).
    sums: usize,
    base: Vec<f32>,
    kind: Kind,
    post: Post,
    /// Smallest row width the splits read.
    min_features: usize,
    /// Every leaf adds exactly one weight to column 0 (the fast path).
    single: bool,
}

fn attr<'a>(n: &'a Node, name: &str) -> Option<&'a Attr> {
    n.attrs.iter().find(|a| a.name == name)
}

fn ints<'a>(n: &'a Node, name: &str) -> &'a [i64] {
    attr(n, name).map(|a| a.ints.as_slice()).unwrap_or(&[])
}

fn floats<'a>(n: &'a Node, name: &str) -> &'a [f32] {
    attr(n, name).map(|a| a.floats.as_slice()).unwrap_or(&[])
}

fn to_u32(x: i64, what: &str) -> Result<u32, TreeError> {
    u32::try_from(x).map_err(|_| malformed(format!("{what} {x} out of range")))
}

impl Ensemble {
    fn from_node(n: &Node) -> Result<Ensemble, TreeError> {
        let classifier = match n.op_type.as_str() {
            "TreeEnsembleClassifier" => true,
            "TreeEnsembleRegressor" => false,
            op => return Err(unsupported(format!("operator {op}"))),
        };
        for a in &n.attrs {
            if a.other || a.name.ends_with("_as_tensor") {
                return Err(unsupported(format!("attribute {}", a.name)));
            }
        }
        let post = match attr(n, "post_transform").and_then(|a| a.s.as_deref()) {
            None | Some("NONE") => Post::None,
            Some("LOGISTIC") => Post::Logistic,
            Some("SOFTMAX") => Post::Softmax,
            Some(p) => return Err(unsupported(format!("post_transform {p}"))),
        };
        if let Some(agg) = attr(n, "aggregate_function").and_then(|a| a.s.as_deref())
            && agg != "SUM"
        {
            return Err(unsupported(format!("aggregate_function {agg}")));
        }
        let base = floats(n, "base_values").to_vec();
        let (prefix, width) = if classifier {
            if attr(n, "classlabels_strings").is_some_and(|a| !a.strings.is_empty()) {
                return Err(unsupported("string class labels"));
            }
            ("class", ints(n, "classlabels_int64s").len())
        } else {
            let t = attr(n, "n_targets").and_then(|a| a.i).unwrap_or(1);
            (
                "target",
                usize::try_from(t).map_err(|_| malformed(format!("n_targets {t}")))?,
            )
        };
        if width == 0 {
            return Err(malformed("no classes or targets"));
        }
        let tree_ids = ints(n, "nodes_treeids");
        let node_ids = ints(n, "nodes_nodeids");
        let feats = ints(n, "nodes_featureids");
        let modes = &attr(n, "nodes_modes")
            .ok_or_else(|| malformed("no nodes_modes"))?
            .strings;
        let values = floats(n, "nodes_values");
        let yes = ints(n, "nodes_truenodeids");
        let no = ints(n, "nodes_falsenodeids");
        let missing = ints(n, "nodes_missing_value_tracks_true");
        let m = tree_ids.len();
        if [
            node_ids.len(),
            feats.len(),
            modes.len(),
            values.len(),
            yes.len(),
            no.len(),
        ]
        .iter()
        .any(|&l| l != m)
            || !(missing.is_empty() || missing.len() == m)
        {
            return Err(malformed("node attribute arrays differ in length"));
        }
        let w_tree = ints(n, &format!("{prefix}_treeids"));
        let w_node = ints(n, &format!("{prefix}_nodeids"));
        let w_col = ints(n, &format!("{prefix}_ids"));
        let w_val = floats(n, &format!("{prefix}_weights"));
        if [w_node.len(), w_col.len(), w_val.len()]
            .iter()
            .any(|&l| l != w_tree.len())
        {
            return Err(malformed("weight attribute arrays differ in length"));
        }
        // Trees in ascending id; (tree, node) -> position in the attribute arrays.
        let mut trees: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        let mut at: HashMap<(i64, i64), usize> = HashMap::with_capacity(m);
        for i in 0..m {
            if at.insert((tree_ids[i], node_ids[i]), i).is_some() {
                return Err(malformed(format!(
                    "tree {} node {} appears twice",
                    tree_ids[i], node_ids[i]
                )));
            }
            trees.entry(tree_ids[i]).or_default().push(i);
        }
        let mut weights: HashMap<usize, Vec<(u32, f32)>> = HashMap::new();
        let mut classes = std::collections::BTreeSet::new();
        for j in 0..w_tree.len() {
            let i = *at.get(&(w_tree[j], w_node[j])).ok_or_else(|| {
                malformed(format!(
                    "weight for missing tree {} node {}",
                    w_tree[j], w_node[j]
                ))
            })?;
            let c = to_u32(w_col[j], "class/target id")?;
            if c as usize >= width {
                return Err(malformed(format!("class/target id {c} >= {width}")));
            }
            classes.insert(c);
            weights.entry(i).or_default().push((c, w_val[j]));
        }
        if classifier && width > 2 && classes.len() < width {
            // ONNX Runtime scores classes without any leaf weight its own way.
            return Err(unsupported("a class without leaf weights"));
        }
        let (kind, sums) = if classifier && width == 2 {
            if classes.len() > 1 || !base.is_empty() {
                return Err(unsupported(
                    "two classes with weights on both or base values",
                ));
            }
            if w_val.iter().all(|&w| w >= 0.0) {
                return Err(unsupported("binary classifier whose weights are all >= 0"));
            }
            if post == Post::Softmax {
                return Err(unsupported("SOFTMAX on a binary classifier"));
            }
            (Kind::Binary, 1)
        } else {
            if classifier && width == 1 {
                return Err(unsupported("classifier with one class"));
            }
            if !classifier && post != Post::None {
                return Err(unsupported("regressor with a post_transform"));
            }
            if !(base.is_empty() || base.len() == width) {
                return Err(unsupported("base_values not one per column"));
            }
            (Kind::PerColumn, width)
        };
        let mut e = Ensemble {
            splits: Vec::new(),
            roots: Vec::with_capacity(trees.len()),
            leaf_start: vec![0],
            leaf_cols: Vec::new(),
            leaf_weights: Vec::new(),
            sums,
            base,
            kind,
            post,
            min_features: 0,
            single: true,
        };
        for (tree, members) in &trees {
            // The root is the one node no other node of the tree points at.
            let mut child = std::collections::HashSet::new();
            for &i in members {
                if modes[i] != "LEAF" {
                    child.insert(yes[i]);
                    child.insert(no[i]);
                }
            }
            let roots: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&i| !child.contains(&node_ids[i]))
                .collect();
            let [root] = roots[..] else {
                return Err(malformed(format!("tree {tree} has {} roots", roots.len())));
            };
            let mut seen = 0usize;
            let r = e.add(
                root, *tree, &at, modes, feats, values, yes, no, missing, &weights, &mut seen, 0,
            )?;
            if seen != members.len() {
                return Err(malformed(format!(
                    "tree {tree}: {} of its {} nodes are unreachable from its root",
                    members.len() - seen,
                    members.len()
                )));
            }
            e.roots.push(r);
        }
        Ok(e)
    }

    /// Append the subtree at attribute position `i`; returns its reference.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        i: usize,
        tree: i64,
        at: &HashMap<(i64, i64), usize>,
        modes: &[String],
        feats: &[i64],
        values: &[f32],
        yes: &[i64],
        no: &[i64],
        missing: &[i64],
        weights: &HashMap<usize, Vec<(u32, f32)>>,
        seen: &mut usize,
        depth: usize,
    ) -> Result<u32, TreeError> {
        *seen += 1;
        if depth > 4096 || *seen > at.len() {
            return Err(malformed(format!("tree {tree} is not a tree (cycle)")));
        }
        let mode = match modes[i].as_str() {
            "LEAF" => {
                let w = weights.get(&i).map(Vec::as_slice).unwrap_or(&[]);
                if !(w.len() == 1 && w[0].0 == 0) {
                    self.single = false;
                }
                for &(c, x) in w {
                    self.leaf_cols.push(c);
                    self.leaf_weights.push(x);
                }
                let leaf = self.leaf_start.len() - 1;
                self.leaf_start.push(self.leaf_weights.len() as u32);
                if leaf as u32 >= LEAF {
                    return Err(unsupported("more than 2^31 leaves"));
                }
                return Ok(LEAF | leaf as u32);
            }
            "BRANCH_LEQ" => Mode::Leq,
            "BRANCH_LT" => Mode::Lt,
            "BRANCH_GTE" => Mode::Gte,
            "BRANCH_GT" => Mode::Gt,
            "BRANCH_EQ" => Mode::Eq,
            "BRANCH_NEQ" => Mode::Neq,
            other => return Err(unsupported(format!("node mode {other}"))),
        };
        let feature = to_u32(feats[i], "feature id")?;
        if feature > FEATURE_MASK {
            return Err(unsupported(format!("feature id {feature}")));
        }
        self.min_features = self.min_features.max(feature as usize + 1);
        let mut meta = feature | ((mode as u32) << MODE_SHIFT);
        if missing.get(i).copied().unwrap_or(0) != 0 {
            meta |= MISSING_TRUE;
        }
        let me = self.splits.len();
        if me as u32 >= LEAF {
            return Err(unsupported("more than 2^31 nodes"));
        }
        self.splits.push(Split {
            threshold: values[i],
            meta,
            yes: 0,
            no: 0,
        });
        let child = |id: i64| {
            at.get(&(tree, id))
                .copied()
                .ok_or_else(|| malformed(format!("tree {tree}: child node {id} does not exist")))
        };
        let (y, n) = (child(yes[i])?, child(no[i])?);
        let y = self.add(
            y,
            tree,
            at,
            modes,
            feats,
            values,
            yes,
            no,
            missing,
            weights,
            seen,
            depth + 1,
        )?;
        let n = self.add(
            n,
            tree,
            at,
            modes,
            feats,
            values,
            yes,
            no,
            missing,
            weights,
            seen,
            depth + 1,
        )?;
        self.splits[me].yes = y;
        self.splits[me].no = n;
        Ok(me as u32)
    }

    /// Output columns.
    fn width(&self) -> usize {
        match self.kind {
            Kind::Binary => 2,
            Kind::PerColumn => self.sums,
        }
    }

    #[inline(always)]
    fn leaf_of(&self, root: u32, row: &[f32]) -> usize {
        let mut r = root;
        while r & LEAF == 0 {
            let s = &self.splits[r as usize];
            r = if decide(s, row) { s.yes } else { s.no };
        }
        (r & !LEAF) as usize
    }

    /// Raw sums of `n` rows of width `f` into `sums` (`n * self.sums`, zeroed here).
    fn sum_rows(&self, input: &[f32], n: usize, f: usize, sums: &mut [f32]) {
        sums.fill(0.0);
        let k = self.sums;
        for &root in &self.roots {
            if self.single {
                for (r, s) in sums.iter_mut().enumerate().take(n) {
                    let leaf = self.leaf_of(root, &input[r * f..(r + 1) * f]);
                    *s += self.leaf_weights[self.leaf_start[leaf] as usize];
                }
            } else {
                for r in 0..n {
                    let leaf = self.leaf_of(root, &input[r * f..(r + 1) * f]);
                    let (a, b) = (
                        self.leaf_start[leaf] as usize,
                        self.leaf_start[leaf + 1] as usize,
                    );
                    for j in a..b {
                        sums[r * k + self.leaf_cols[j] as usize] += self.leaf_weights[j];
                    }
                }
            }
        }
    }

    /// Score `n` rows into `out` (`n * width`).
    fn predict(&self, input: &[f32], n: usize, f: usize, out: &mut [f32], sums: &mut Vec<f32>) {
        let w = self.width();
        let k = self.sums;
        for start in (0..n).step_by(CHUNK) {
            let m = CHUNK.min(n - start);
            sums.resize(m * k, 0.0);
            self.sum_rows(&input[start * f..(start + m) * f], m, f, sums);
            for r in 0..m {
                let o = &mut out[(start + r) * w..(start + r + 1) * w];
                let s = &mut sums[r * k..(r + 1) * k];
                for (x, b) in s.iter_mut().zip(&self.base) {
                    *x += *b;
                }
                match self.kind {
                    Kind::Binary => {
                        let s = s[0];
                        (o[0], o[1]) = match self.post {
                            Post::Logistic => (logistic(-s), logistic(s)),
                            _ => (-s, s),
                        };
                    }
                    Kind::PerColumn => {
                        o.copy_from_slice(s);
                        match self.post {
                            Post::None => {}
                            Post::Logistic => o.iter_mut().for_each(|x| *x = logistic(*x)),
                            Post::Softmax => softmax(o),
                        }
                    }
                }
            }
        }
    }
}

/// Rows scored per tree pass (the sums and rows of one chunk stay in cache).
const CHUNK: usize = 256;

/// ONNX Runtime's `ComputeLogistic`.
fn logistic(x: f32) -> f32 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 { 1.0 - v } else { v }
}

/// ONNX Runtime's `ComputeSoftmax`.
fn softmax(v: &mut [f32]) {
    let max = v.iter().fold(-f32::MAX, |m, &x| if x > m { x } else { m });
    let mut sum = 0.0f32;
    for x in v.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in v.iter_mut() {
        *x /= sum;
    }
}

// ---------------------------------------------------------------- graph plan

/// How the requested output is computed from the ensembles.
#[derive(Debug, Clone)]
enum Expr {
    Trees(usize),
    Scale(Box<Expr>, f32),
    Sum(Vec<Expr>),
}

/// A tree-ensemble model ready to score one named output.
#[derive(Debug, Clone)]
pub struct TreeModel {
    ensembles: Vec<Ensemble>,
    expr: Expr,
    width: usize,
    min_features: usize,
    trees: usize,
    sums: Vec<f32>,
    tmp: Vec<Vec<f32>>,
}

fn plan(
    g: &Graph,
    name: &str,
    ensembles: &mut Vec<Ensemble>,
    depth: usize,
) -> Result<(Expr, usize), TreeError> {
    if depth > 64 {
        return Err(unsupported("graph deeper than 64 nodes"));
    }
    let mut producers = g
        .nodes
        .iter()
        .filter(|n| n.outputs.iter().any(|o| o == name));
    let n = producers
        .next()
        .ok_or_else(|| unsupported(format!("`{name}` is not produced by a node")))?;
    if producers.next().is_some() {
        return Err(malformed(format!("`{name}` is produced twice")));
    }
    let input = |k: usize| {
        n.inputs
            .get(k)
            .ok_or_else(|| malformed(format!("{} node has no input {k}", n.op_type)))
    };
    match (n.domain.as_str(), n.op_type.as_str()) {
        ("ai.onnx.ml", "TreeEnsembleClassifier" | "TreeEnsembleRegressor") => {
            let want = if n.op_type == "TreeEnsembleClassifier" {
                1
            } else {
                0
            };
            if n.outputs.get(want).map(String::as_str) != Some(name) {
                return Err(unsupported(format!(
                    "`{name}` is not the ensemble's scores"
                )));
            }
            if n.inputs.len() != 1 {
                return Err(malformed("tree ensemble with several inputs"));
            }
            let e = Ensemble::from_node(n)?;
            let w = e.width();
            ensembles.push(e);
            Ok((Expr::Trees(ensembles.len() - 1), w))
        }
        ("", "Identity") => plan(g, input(0)?, ensembles, depth + 1),
        ("", "Mul") => {
            let (a, b) = (input(0)?, input(1)?);
            let (x, c) = match (g.scalars.get(a), g.scalars.get(b)) {
                (None, Some(&c)) => (a, c),
                (Some(&c), None) => (b, c),
                _ => return Err(unsupported("Mul without one scalar float initializer")),
            };
            let (e, w) = plan(g, x, ensembles, depth + 1)?;
            Ok((Expr::Scale(Box::new(e), c), w))
        }
        ("", "Sum") => {
            let mut parts = Vec::new();
            let mut width = None;
            for i in &n.inputs {
                let (e, w) = plan(g, i, ensembles, depth + 1)?;
                if width.is_some_and(|x| x != w) {
                    return Err(unsupported("Sum of inputs of different widths"));
                }
                width = Some(w);
                parts.push(e);
            }
            let w = width.ok_or_else(|| malformed("Sum without inputs"))?;
            Ok((Expr::Sum(parts), w))
        }
        (d, op) => Err(unsupported(format!(
            "operator {}{op} producing `{name}`",
            if d.is_empty() {
                String::new()
            } else {
                format!("{d}.")
            }
        ))),
    }
}

impl TreeModel {
    /// Read `bytes` (an ONNX ModelProto) and plan how `output` is computed. Graphs that
    /// are anything but tree ensembles plus Identity / scalar Mul / Sum on the path to
    /// `output` are [`TreeError::Unsupported`].
    pub fn from_onnx(bytes: &[u8], output: &str) -> Result<TreeModel, TreeError> {
        let g = parse_model(bytes)?;
        let mut ensembles = Vec::new();
        let (expr, width) = plan(&g, output, &mut ensembles, 0)?;
        let min_features = ensembles.iter().map(|e| e.min_features).max().unwrap_or(0);
        let trees = ensembles.iter().map(|e| e.roots.len()).sum();
        Ok(TreeModel {
            ensembles,
            expr,
            width,
            min_features,
            trees,
            sums: Vec::new(),
            tmp: Vec::new(),
        })
    }

    /// Columns of the output per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Trees over all ensembles.
    pub fn trees(&self) -> usize {
        self.trees
    }

    /// Score `n` rows of `f` float32 features (row-major `input`) into `out`
    /// (`n * width()` values, row-major), as ONNX Runtime would.
    pub fn predict(
        &mut self,
        input: &[f32],
        n: usize,
        f: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), TreeError> {
        if input.len() != n * f {
            return Err(TreeError::Input(format!(
                "{} values for {n} rows of {f} features",
                input.len()
            )));
        }
        if f < self.min_features {
            return Err(TreeError::Input(format!(
                "rows have {f} features, the model reads {}",
                self.min_features
            )));
        }
        out.clear();
        out.resize(n * self.width, 0.0);
        let mut tmp = std::mem::take(&mut self.tmp);
        let mut sums = std::mem::take(&mut self.sums);
        self.eval(&self.expr, input, n, f, out, &mut sums, &mut tmp);
        self.tmp = tmp;
        self.sums = sums;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn eval(
        &self,
        e: &Expr,
        input: &[f32],
        n: usize,
        f: usize,
        out: &mut [f32],
        sums: &mut Vec<f32>,
        tmp: &mut Vec<Vec<f32>>,
    ) {
        match e {
            Expr::Trees(i) => self.ensembles[*i].predict(input, n, f, out, sums),
            Expr::Scale(x, c) => {
                self.eval(x, input, n, f, out, sums, tmp);
                out.iter_mut().for_each(|v| *v *= *c);
            }
            Expr::Sum(parts) => {
                let mut buf = tmp.pop().unwrap_or_default();
                buf.clear();
                buf.resize(out.len(), 0.0);
                for (j, p) in parts.iter().enumerate() {
                    if j == 0 {
                        self.eval(p, input, n, f, out, sums, tmp);
                    } else {
                        self.eval(p, input, n, f, &mut buf, sums, tmp);
                        out.iter_mut().zip(&buf).for_each(|(o, b)| *o += *b);
                    }
                }
                tmp.push(buf);
            }
        }
    }
}

// ---------------------------------------------------------------- writer

/// A small ONNX writer for tree-ensemble models shaped like onnxmltools' LightGBM
/// output (tests and benches build random models with it).
pub mod writer {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn key(out: &mut Vec<u8>, field: u64, wire: u64) {
        varint(out, (field << 3) | wire);
    }
    fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
        key(out, field, 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
    fn int(out: &mut Vec<u8>, field: u64, v: i64) {
        key(out, field, 0);
        varint(out, v as u64);
    }

    /// An attribute value.
    #[derive(Debug, Clone)]
    pub enum AttrValue {
        /// INT.
        Int(i64),
        /// STRING.
        Str(String),
        /// FLOATS.
        Floats(Vec<f32>),
        /// INTS.
        Ints(Vec<i64>),
        /// STRINGS.
        Strs(Vec<String>),
    }

    fn attribute(name: &str, v: &AttrValue) -> Vec<u8> {
        let mut a = Vec::new();
        bytes(&mut a, 1, name.as_bytes());
        match v {
            AttrValue::Int(i) => {
                int(&mut a, 3, *i);
                int(&mut a, 20, 2);
            }
            AttrValue::Str(s) => {
                bytes(&mut a, 4, s.as_bytes());
                int(&mut a, 20, 3);
            }
            AttrValue::Floats(f) => {
                let mut p = Vec::with_capacity(f.len() * 4);
                f.iter().for_each(|x| p.extend_from_slice(&x.to_le_bytes()));
                bytes(&mut a, 7, &p);
                int(&mut a, 20, 6);
            }
            AttrValue::Ints(v) => {
                let mut p = Vec::new();
                v.iter().for_each(|x| varint(&mut p, *x as u64));
                bytes(&mut a, 8, &p);
                int(&mut a, 20, 7);
            }
            AttrValue::Strs(v) => {
                v.iter().for_each(|s| bytes(&mut a, 9, s.as_bytes()));
                int(&mut a, 20, 8);
            }
        }
        a
    }

    /// A graph node.
    #[derive(Debug, Clone, Default)]
    pub struct NodeSpec {
        /// Operator.
        pub op_type: String,
        /// Domain (`ai.onnx.ml` for the tree ensembles).
        pub domain: String,
        /// Inputs.
        pub inputs: Vec<String>,
        /// Outputs.
        pub outputs: Vec<String>,
        /// Attributes.
        pub attrs: Vec<(String, AttrValue)>,
    }

    fn node(n: &NodeSpec) -> Vec<u8> {
        let mut b = Vec::new();
        n.inputs.iter().for_each(|s| bytes(&mut b, 1, s.as_bytes()));
        n.outputs
            .iter()
            .for_each(|s| bytes(&mut b, 2, s.as_bytes()));
        bytes(&mut b, 4, n.op_type.as_bytes());
        for (name, v) in &n.attrs {
            bytes(&mut b, 5, &attribute(name, v));
        }
        if !n.domain.is_empty() {
            bytes(&mut b, 7, n.domain.as_bytes());
        }
        b
    }

    /// A value info of element type `elem` (1 float, 7 int64) and shape `[N, width]`
    /// (`[N]` when width is None).
    fn value_info(name: &str, elem: i64, width: Option<i64>) -> Vec<u8> {
        let mut shape = Vec::new();
        let mut d = Vec::new();
        bytes(&mut d, 2, b"N");
        bytes(&mut shape, 1, &d);
        if let Some(w) = width {
            let mut d = Vec::new();
            int(&mut d, 1, w);
            bytes(&mut shape, 1, &d);
        }
        let mut tensor = Vec::new();
        int(&mut tensor, 1, elem);
        bytes(&mut tensor, 2, &shape);
        let mut ty = Vec::new();
        bytes(&mut ty, 1, &tensor);
        let mut v = Vec::new();
        bytes(&mut v, 1, name.as_bytes());
        bytes(&mut v, 2, &ty);
        v
    }

    /// The model bytes: `nodes` over a float input `input` [N, features], the
    /// float `scalars` as initializers, and `outputs` as (name, element type, width).
    pub fn model(
        nodes: &[NodeSpec],
        input: &str,
        features: i64,
        scalars: &[(&str, f32)],
        outputs: &[(&str, i64, Option<i64>)],
    ) -> Vec<u8> {
        let mut g = Vec::new();
        nodes.iter().for_each(|n| bytes(&mut g, 1, &node(n)));
        bytes(&mut g, 2, b"trees");
        for (name, x) in scalars {
            let mut t = Vec::new();
            int(&mut t, 2, 1);
            key(&mut t, 4, 5);
            t.extend_from_slice(&x.to_le_bytes());
            bytes(&mut t, 8, name.as_bytes());
            bytes(&mut g, 5, &t);
        }
        bytes(&mut g, 11, &value_info(input, 1, Some(features)));
        for (name, elem, w) in outputs {
            bytes(&mut g, 12, &value_info(name, *elem, *w));
        }
        let mut m = Vec::new();
        int(&mut m, 1, 8);
        bytes(&mut m, 2, b"prognos");
        bytes(&mut m, 7, &g);
        for (domain, version) in [("", 15i64), ("ai.onnx.ml", 1)] {
            let mut o = Vec::new();
            if !domain.is_empty() {
                bytes(&mut o, 1, domain.as_bytes());
            }
            int(&mut o, 2, version);
            bytes(&mut m, 8, &o);
        }
        m
    }

    /// A split: (feature, threshold, mode, missing goes true, true child, false child).
    pub type SplitSpec = (i64, f32, String, bool, i64, i64);

    /// One tree in LightGBM's shape, nodes numbered from 0 (the root).
    #[derive(Debug, Clone, Default)]
    pub struct TreeSpec {
        /// Per node: Some((feature, threshold, mode, missing goes true, true child,
        /// false child)) for a split, None for a leaf.
        pub splits: Vec<Option<SplitSpec>>,
        /// (node, class or target, weight) per leaf weight.
        pub weights: Vec<(i64, i64, f32)>,
    }

    /// The `TreeEnsembleClassifier` / `Regressor` node of `trees` (prefix `class` with
    /// `labels` classes and outputs `label`/`scores`, or `target` with `labels`
    /// targets and output `scores`).
    pub fn ensemble(
        trees: &[TreeSpec],
        classifier: bool,
        labels: i64,
        post: &str,
        input: &str,
        outputs: &[&str],
    ) -> NodeSpec {
        let (mut tid, mut nid, mut fid, mut modes, mut vals, mut yes, mut no, mut miss) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        let (mut wt, mut wn, mut wc, mut ww) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (t, tree) in trees.iter().enumerate() {
            for (i, s) in tree.splits.iter().enumerate() {
                tid.push(t as i64);
                nid.push(i as i64);
                match s {
                    Some((f, th, mode, m, y, n)) => {
                        fid.push(*f);
                        vals.push(*th);
                        modes.push(mode.clone());
                        miss.push(i64::from(*m));
                        yes.push(*y);
                        no.push(*n);
                    }
                    None => {
                        fid.push(0);
                        vals.push(0.0);
                        modes.push("LEAF".to_string());
                        miss.push(0);
                        yes.push(0);
                        no.push(0);
                    }
                }
            }
            for (n, c, w) in &tree.weights {
                wt.push(t as i64);
                wn.push(*n);
                wc.push(*c);
                ww.push(*w);
            }
        }
        let p = if classifier { "class" } else { "target" };
        let mut attrs = vec![
            (format!("{p}_ids"), AttrValue::Ints(wc)),
            (format!("{p}_nodeids"), AttrValue::Ints(wn)),
            (format!("{p}_treeids"), AttrValue::Ints(wt)),
            (format!("{p}_weights"), AttrValue::Floats(ww)),
            ("nodes_falsenodeids".into(), AttrValue::Ints(no)),
            ("nodes_featureids".into(), AttrValue::Ints(fid)),
            (
                "nodes_missing_value_tracks_true".into(),
                AttrValue::Ints(miss),
            ),
            ("nodes_modes".into(), AttrValue::Strs(modes)),
            ("nodes_nodeids".into(), AttrValue::Ints(nid)),
            ("nodes_treeids".into(), AttrValue::Ints(tid)),
            ("nodes_truenodeids".into(), AttrValue::Ints(yes)),
            ("nodes_values".into(), AttrValue::Floats(vals)),
            ("post_transform".into(), AttrValue::Str(post.into())),
        ];
        if classifier {
            attrs.push((
                "classlabels_int64s".into(),
                AttrValue::Ints((0..labels).collect()),
            ));
        } else {
            attrs.push(("n_targets".into(), AttrValue::Int(labels)));
        }
        NodeSpec {
            op_type: if classifier {
                "TreeEnsembleClassifier"
            } else {
                "TreeEnsembleRegressor"
            }
            .into(),
            domain: "ai.onnx.ml".into(),
            inputs: vec![input.into()],
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attrs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::writer::*;
    use super::*;

    /// x0 <= 0.5 (NaN true) ? (x1 < 2 ? 1.0 : -2.0) : 3.0
    fn tree() -> TreeSpec {
        TreeSpec {
            splits: vec![
                Some((0, 0.5, "BRANCH_LEQ".into(), true, 1, 2)),
                Some((1, 2.0, "BRANCH_LT".into(), false, 3, 4)),
                None,
                None,
                None,
            ],
            weights: vec![(2, 0, 3.0), (3, 0, 1.0), (4, 0, -2.0)],
        }
    }

    fn regressor(trees: &[TreeSpec]) -> Vec<u8> {
        let e = ensemble(trees, false, 1, "NONE", "input", &["output"]);
        let id = NodeSpec {
            op_type: "Identity".into(),
            inputs: vec!["output".into()],
            outputs: vec!["variable".into()],
            ..NodeSpec::default()
        };
        model(&[e, id], "input", 2, &[], &[("variable", 1, Some(1))])
    }

    #[test]
    fn regressor_follows_modes_and_missing() {
        let mut m = TreeModel::from_onnx(&regressor(&[tree(), tree()]), "variable").unwrap();
        let nan = f32::NAN;
        let rows = [0.5, 1.9, 0.6, 0.0, nan, 2.0, 0.0, nan];
        let mut out = Vec::new();
        m.predict(&rows, 4, 2, &mut out).unwrap();
        // NaN on x1 (missing false) goes to the false branch.
        assert_eq!(out, vec![2.0, 6.0, -4.0, -4.0]);
    }

    #[test]
    fn binary_classifier_is_logistic_pair_and_ensembles_average() {
        let e = |i: usize| {
            ensemble(
                &[tree()],
                true,
                2,
                "LOGISTIC",
                "input",
                &[&format!("label{i}"), &format!("p{i}")],
            )
        };
        let sum = NodeSpec {
            op_type: "Sum".into(),
            inputs: vec!["p0".into(), "p1".into()],
            outputs: vec!["s".into()],
            ..NodeSpec::default()
        };
        let mul = NodeSpec {
            op_type: "Mul".into(),
            inputs: vec!["s".into(), "inv_k".into()],
            outputs: vec!["probabilities".into()],
            ..NodeSpec::default()
        };
        let bytes = model(
            &[e(0), e(1), sum, mul],
            "input",
            2,
            &[("inv_k", 0.5)],
            &[("probabilities", 1, Some(2))],
        );
        let mut m = TreeModel::from_onnx(&bytes, "probabilities").unwrap();
        let mut out = Vec::new();
        m.predict(&[0.0, 0.0], 1, 2, &mut out).unwrap();
        let p = 1.0 / (1.0 + (-1.0f32).exp());
        assert!(
            (out[1] - p).abs() < 1e-7 && (out[0] - (1.0 - p)).abs() < 1e-7,
            "{out:?}"
        );
    }

    #[test]
    fn other_graphs_are_unsupported_and_bad_bytes_malformed() {
        let shape = NodeSpec {
            op_type: "Shape".into(),
            inputs: vec!["input".into()],
            outputs: vec!["probabilities".into()],
            ..NodeSpec::default()
        };
        let bytes = model(&[shape], "input", 2, &[], &[("probabilities", 1, Some(1))]);
        let e = TreeModel::from_onnx(&bytes, "probabilities").unwrap_err();
        assert!(matches!(e, TreeError::Unsupported(_)), "{e}");
        let e = TreeModel::from_onnx(&[0x3a, 0xff, 0xff], "x").unwrap_err();
        assert!(matches!(e, TreeError::Malformed(_)), "{e}");
        // A cycle is malformed, not a hang.
        let mut t = tree();
        t.splits[1] = Some((1, 2.0, "BRANCH_LT".into(), false, 1, 4));
        let e = TreeModel::from_onnx(&regressor(&[t]), "variable").unwrap_err();
        assert!(matches!(e, TreeError::Malformed(_)), "{e}");
    }

    #[test]
    fn short_rows_are_an_error() {
        let mut m = TreeModel::from_onnx(&regressor(&[tree()]), "variable").unwrap();
        let e = m.predict(&[0.0], 1, 1, &mut Vec::new()).unwrap_err();
        assert!(matches!(e, TreeError::Input(_)), "{e}");
    }
}
