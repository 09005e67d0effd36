//! Incremental inference: each model's `forward_incremental`, written from its routed `forward`.
//!
//! The prefix of `forward` that incremental inference can follow runs on
//! `crate::model::incremental::Crops` (see `src/model/incremental.rs`): convolutions and max
//! poolings through `inc.conv2d` / `inc.max_pool2d`, which compute only where a variant
//! changed, and pixelwise statements (activations, per-channel affine maps, channel slices,
//! concatenations along channels, local response normalisation, sums of branches) through
//! `inc.map`, which runs the statement's own expression on the crops. The prefix ends at the
//! first statement that is none of these (a global pooling, a reshape, a fully connected
//! layer, any module this file does not know): there every variable still used turns into the
//! full batch, and the rest of `forward` follows unchanged, its convolutions counted.

use std::collections::HashSet;

use crate::routing::uses;

/// `source` with a `forward_incremental` method after the model's `forward`.
pub(crate) fn add_incremental_forward(source: &str) -> Result<String, String> {
    let lines: Vec<&str> = source.lines().collect();
    let Some(start) = lines
        .iter()
        .position(|l| l.trim_start().starts_with("pub fn forward("))
    else {
        return Ok(source.to_string());
    };
    let end = lines[start..]
        .iter()
        .position(|l| l.starts_with("    }"))
        .map(|i| start + i)
        .ok_or("generated forward has no end")?;
    let signature = lines[start].trim();
    let input = signature
        .strip_prefix("pub fn forward(&self, ")
        .and_then(|rest| rest.split_once(": Tensor<4>)"))
        .map(|(name, _)| name.to_string())
        .ok_or_else(|| format!("unexpected forward signature: {signature}"))?;
    let output = signature
        .rsplit_once("-> ")
        .map(|(_, out)| out.trim_end_matches(" {").to_string())
        .ok_or("forward has no return type")?;
    let body = lines[start + 1..end].join("\n");
    let statements = split_statements(&body);

    let mut out = String::new();
    out.push_str(&format!(
        "    /// As `forward`, for a batch of variants that each change one rectangle of the input: the\n    \
         /// prefix computed only where they changed (`crate::model::incremental`).\n    \
         pub fn forward_incremental(&self, inc: &crate::model::incremental::Incremental, {input}: crate::model::incremental::Crops<4>) -> {output} {{\n"
    ));
    let mut regions: Vec<String> = vec![input.clone()];
    let mut constants: HashSet<String> = HashSet::new();
    let mut id = 0usize;
    let mut cut = statements.len();
    for (i, statement) in statements.iter().enumerate() {
        let Some((name, annotation, expr)) = split_let(statement) else {
            cut = i;
            break;
        };
        let used: Vec<&String> = regions.iter().filter(|r| uses(&expr, r) > 0).collect();
        if used.is_empty() {
            constants.insert(name.clone());
            out.push_str(&format!("        {}\n", statement.trim()));
            continue;
        }
        id += 1;
        let line = if let Some((field, arg, act)) = conv_call(&expr) {
            regions
                .contains(&arg)
                .then(|| format!("inc.conv2d({id}, &self.{field}, &{arg}, {act})"))
        } else if let Some((field, arg)) = pool_call(&expr) {
            regions
                .contains(&arg)
                .then(|| format!("inc.max_pool2d({id}, &self.{field}, &{arg})"))
        } else if pixelwise(&expr) {
            let names: Vec<&str> = used.iter().map(|s| s.as_str()).collect();
            let mut body = expr.clone();
            for c in &constants {
                body = clone_uses(&body, c);
            }
            Some(format!(
                "inc.map({id}, [{refs}], |[{names}]| {body})",
                refs = names
                    .iter()
                    .map(|n| format!("&{n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                names = names.join(", "),
            ))
        } else {
            None
        };
        let Some(line) = line else {
            cut = i;
            break;
        };
        let annotation = annotation
            .map(|a| {
                format!(
                    ": {}",
                    a.replace("Tensor<", "crate::model::incremental::Crops<")
                )
            })
            .unwrap_or_default();
        out.push_str(&format!("        let {name}{annotation} = {line};\n"));
        regions.push(name);
    }
    let rest = &statements[cut..];
    let rest_text = rest.join("\n");
    for region in &regions {
        if uses(&rest_text, region) > 0 {
            out.push_str(&format!("        let {region} = inc.full({region});\n"));
        }
    }
    for statement in rest {
        out.push_str(&format!(
            "        {}\n",
            statement
                .trim()
                .replace("crate::model::cpu::conv2d(", "inc.full_conv2d(")
        ));
    }
    out.push_str("    }\n");

    let mut result: Vec<String> = lines[..=end].iter().map(|l| l.to_string()).collect();
    result.push(out);
    result.extend(lines[end + 1..].iter().map(|l| l.to_string()));
    Ok(result.join("\n") + "\n")
}

/// The statements of a function body: split at `;` outside brackets, the final expression last.
fn split_statements(body: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut depth = 0i32;
    for c in body.chars() {
        current.push(c);
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ';' if depth == 0 => {
                statements.push(current.trim().to_string());
                current.clear();
            }
            _ => {}
        }
    }
    if !current.trim().is_empty() {
        statements.push(current.trim().to_string());
    }
    statements
}

/// `let NAME[: TYPE] = EXPR;` as its three parts.
fn split_let(statement: &str) -> Option<(String, Option<String>, String)> {
    let rest = statement.strip_prefix("let ")?.strip_suffix(';')?;
    let (head, expr) = rest.split_once(" = ")?;
    let (name, annotation) = match head.split_once(": ") {
        Some((name, ty)) => (name.trim(), Some(ty.trim().to_string())),
        None => (head.trim(), None),
    };
    let plain = !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    plain.then(|| (name.to_string(), annotation, expr.trim().to_string()))
}

/// `crate::model::cpu::conv2d(&self.FIELD, ARG[.clone()], ACTIVATION)`.
fn conv_call(expr: &str) -> Option<(String, String, String)> {
    let args = expr
        .strip_prefix("crate::model::cpu::conv2d(&self.")?
        .strip_suffix(')')?;
    let mut parts = args.splitn(3, ", ");
    let field = parts.next()?.to_string();
    let arg = parts.next()?;
    let act = parts.next()?.to_string();
    let arg = arg.strip_suffix(".clone()").unwrap_or(arg).to_string();
    Some((field, arg, act))
}

/// `crate::model::cpu::max_pool2d(&self.FIELD, ARG[.clone()])`.
fn pool_call(expr: &str) -> Option<(String, String)> {
    let args = expr
        .strip_prefix("crate::model::cpu::max_pool2d(&self.")?
        .strip_suffix(')')?;
    let (field, arg) = args.split_once(", ")?;
    let arg = arg.strip_suffix(".clone()").unwrap_or(arg).to_string();
    Some((field.to_string(), arg))
}

/// Whether every output pixel of `expr` depends only on the same pixel of its inputs: every
/// call is one of a known list, and those that take dimensions keep the last two (height and
/// width) as they are.
fn pixelwise(expr: &str) -> bool {
    const CALLS: &[&str] = &[
        "mul",
        "add",
        "sub",
        "div",
        "clone",
        "into",
        "relu",
        "clamp",
        "lrn",
        "from",
        "cat",
        "slice",
        "squeeze_dim",
        "unsqueeze_dims",
    ];
    let flat: String = expr.split_whitespace().collect::<Vec<_>>().join(" ");
    let bytes = flat.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if !(c.is_alphabetic() || c == '_') {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && ((bytes[i] as char).is_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        let word = &flat[start..i];
        let after = &flat[i..];
        if after.starts_with('!') {
            // Only `s![.., CHANNELS, .., ..]`: a slice of channels.
            if word != "s" {
                return false;
            }
            let Some(args) = after
                .strip_prefix("![")
                .and_then(|a| a.split_once(']'))
                .map(|(a, _)| a)
            else {
                return false;
            };
            let parts: Vec<&str> = args.split(", ").collect();
            if parts.len() != 4 || parts[0] != ".." || parts[2] != ".." || parts[3] != ".." {
                return false;
            }
            continue;
        }
        let call = after.starts_with('(') || after.starts_with("::<");
        if !call {
            continue;
        }
        if !CALLS.contains(&word) {
            return false;
        }
        let ok = match word {
            "squeeze_dim" => after.starts_with("::<3usize>(1)"),
            "unsqueeze_dims" => {
                after.starts_with("::<4>(&[1])") || after.starts_with("(&[0isize, 1isize, 2isize])")
            }
            "cat" => flat.ends_with(".into(), 1, )") || flat.ends_with(".into(), 1)"),
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// `text` with every use of `ident` by value turned into `ident.clone()`.
fn clone_uses(text: &str, ident: &str) -> String {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(ident) {
        let before = rest[..at].chars().next_back();
        let after_text = &rest[at + ident.len()..];
        let after = after_text.chars().next();
        out.push_str(&rest[..at + ident.len()]);
        let whole = !before.is_some_and(word) && !after.is_some_and(word);
        if whole && !after_text.starts_with(".clone()") {
            out.push_str(".clone()");
        }
        rest = after_text;
    }
    out.push_str(rest);
    out
}
