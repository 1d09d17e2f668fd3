//! `direct-merge`, `placed-merge`, `kept-copy`: every `copy`,
//! `with_directory` and `with_file` becomes a merge of its base and a layer
//! of its source.

use crate::compile::ir::{Ir, IrOp, Layer, NodeId};
use crate::compile::rewrite::{Rewrite, Rule};
use crate::compile::Strategy;
use crate::graph::Placement;

/// Lowers every placement. With [`Strategy::Copy`] every layer of every
/// merge gets `link: false` (the reference build copies every byte).
pub fn run(ir: &mut Ir, strategy: Strategy) {
    let link_allowed = strategy == Strategy::Hardlink;
    for i in 0..ir.nodes.len() {
        if let IrOp::Merge { layers } = &mut ir.nodes[i].op {
            layers.iter_mut().for_each(|l| l.link &= link_allowed);
            continue;
        }
        if !matches!(ir.nodes[i].op, IrOp::Place { .. }) {
            continue;
        }
        // Taken out of the node, which gets its merge at the end.
        let IrOp::Place {
            base,
            source,
            placement,
        } = std::mem::replace(&mut ir.nodes[i].op, IrOp::Scratch)
        else {
            unreachable!("checked above")
        };
        let name = ir.label(i);
        let source_name = ir.label_str(source);
        let source_is_diff = matches!(ir.nodes[source].op, IrOp::Diff { .. });
        let overrides = placement.overrides();
        let whole = placement.is_whole_tree_at_root();
        let (rule, reason, link) = if overrides.any() {
            let set = overrides.names().join(", ");
            let reason = format!(
                "{set} set: a hard link would share the changed inode metadata with the source, so the layer copies"
            );
            (Rule::KeptCopy, reason, false)
        } else if whole && !source_is_diff {
            let reason = format!(
                "the whole tree of `{source_name}` onto /, no filter, no owner/mode/timestamp: a plain layer"
            );
            (Rule::DirectMerge, reason, true)
        } else {
            let reason = placed_reason(&placement, whole && source_is_diff, source_name);
            (Rule::PlacedMerge, reason, true)
        };
        let kind = placement.kind();
        // A direct merge drops the placement; the others keep it whole.
        let layer_placement = (rule != Rule::DirectMerge).then_some(placement);
        let link = link && link_allowed;
        let names = &ir.nodes[i].names;
        let mut layers = Vec::with_capacity(2);
        if let Some(b) = base {
            layers.push(plain(b, link_allowed, names));
        }
        layers.push(Layer {
            input: source,
            link,
            names: names.clone(),
            placement: layer_placement,
        });
        let to = describe_layers(base, rule == Rule::DirectMerge, kind, link);
        let reason = if !link_allowed && rule != Rule::KeptCopy {
            format!("{reason}; --strategy copy: copied")
        } else {
            reason
        };
        ir.rewrites.push(Rewrite {
            op: name,
            rule,
            reason,
            from: kind.to_string(),
            to,
        });
        ir.nodes[i].op = IrOp::Merge { layers };
    }
}

fn plain(input: NodeId, link: bool, names: &[String]) -> Layer {
    Layer {
        input,
        link,
        names: names.to_vec(),
        placement: None,
    }
}

/// What the op became, for `explain`: `merge[base, placed KIND] (link)`.
fn describe_layers(base: Option<NodeId>, direct: bool, kind: &str, link: bool) -> String {
    let base = if base.is_some() { "base, " } else { "" };
    let how = if link { "link" } else { "copy" };
    if direct {
        format!("merge[{base}source] ({how})")
    } else {
        format!("merge[{base}placed {kind}] ({how})")
    }
}

/// Why a placement without overrides is a placed layer, not a plain one.
fn placed_reason(p: &Placement, diff_source: bool, source: &str) -> String {
    let mut why = Vec::new();
    if diff_source {
        why.push(format!(
            "the source `{source}` is a diff: placed, it is its exported tree and deletes nothing"
        ));
    }
    match p {
        Placement::WithDirectory(w) => {
            if w.path != "/" {
                why.push(format!("placed at {}", w.path));
            }
            if w.source_path != "/" {
                why.push(format!("source_path {}", w.source_path));
            }
            if !w.include.is_empty() || !w.exclude.is_empty() {
                why.push("filtered".to_string());
            }
        }
        Placement::WithFile(w) => why.push(format!("one file, {} at {}", w.source_path, w.path)),
        Placement::Copy(c) => {
            why.push(format!("copy {} to {}", c.src, c.dest));
            if c.allow_wildcard {
                why.push("wildcard".to_string());
            }
            if !c.include.is_empty() || !c.exclude.is_empty() {
                why.push("filtered".to_string());
            }
            if c.src == "/" && c.dest == "/" && !c.replace_existing {
                why.push("without replace_existing (type conflicts are errors)".to_string());
            }
        }
    }
    format!(
        "{}; no owner/mode/timestamp: a placed layer, hard-linked",
        why.join(", ")
    )
}
