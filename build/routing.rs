//! Kernel routing of the generated code: each model's `forward` rewritten to call glassbox's
//! kernels (`crate::model::cpu`), and, with feature `layer-profile`, instrumented per statement.

use std::fmt::Write as _;

/// Routes the generated `forward`'s convolutions, fully connected layers and max pools through
/// `crate::model::cpu` (glassbox's CPU kernels, burn's elsewhere), folding into a convolution
/// or a fully connected layer the `Relu` or `Clip` on the next line when that is the only use
/// of its output.
pub(crate) fn use_cpu_kernels(source: &str) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let Some((start, end)) = forward_lines(&lines) else {
        return source.to_string();
    };
    let body = lines[start..end].join("\n");
    let mut out: Vec<String> = lines[..start].iter().map(|l| l.to_string()).collect();
    let mut i = start;
    while i < end {
        let line = lines[i];
        i += 1;
        if line.contains(" = LocalResponseNormConfig::new(") {
            let last = lines[i - 1..end]
                .iter()
                .position(|l| l.trim_end().ends_with(';'))
                .map_or(end, |p| i + p);
            if let Some(call) = lrn_call(&lines[i - 1..last]) {
                out.push(call);
                i = last;
                continue;
            }
        }
        if let Some((name, field, arg)) = module_call(line, "maxpool2d") {
            out.push(format!(
                "        let {name} = crate::model::cpu::max_pool2d(&self.{field}, {arg});"
            ));
            continue;
        }
        let (kernel, (name, field, arg)) = match module_call(line, "conv2d") {
            Some(call) => ("conv2d", call),
            None => match module_call(line, "linear") {
                Some(call) => ("linear", call),
                None => {
                    out.push(line.to_string());
                    continue;
                }
            },
        };
        let activation = lines
            .get(i)
            .filter(|_| i < end && uses(&body, &name) == 2)
            .and_then(|next| activation_of(next, &name));
        let (name, activation) = match activation {
            Some((fused, activation)) => {
                i += 1;
                (fused, activation)
            }
            None => (name, "None".to_string()),
        };
        out.push(format!(
            "        let {name} = crate::model::cpu::{kernel}(&self.{field}, {arg}, crate::model::cpu::Activation::{activation});"
        ));
    }
    out.extend(lines[end..].iter().map(|l| l.to_string()));
    out.join("\n") + "\n"
}

/// Rewrites each concatenation along channels in the routed `forward` whose parts are all
/// routed convolutions used nowhere else (an inception block's branches) to go through
/// `crate::model::cpu::Concat`, which on a GPU has the convolutions write straight into their
/// channels of the result instead of copying them there with `cat`. Run after
/// `add_incremental_forward`, which reads the concatenations as they were.
pub(crate) fn concat_in_place(source: &str) -> String {
    let mut lines: Vec<String> = source.lines().map(str::to_string).collect();
    let Some((start, end)) = forward_lines(&lines) else {
        return source.to_string();
    };
    let body = lines[start..end].join("\n");
    // (line of the `cat`, its name, its parts as (definition line, module field)).
    let mut concats = Vec::new();
    for i in start..end.saturating_sub(3) {
        let Some(name) = lines[i]
            .trim()
            .strip_prefix("let ")
            .and_then(|l| l.strip_suffix(" = burn::tensor::Tensor::cat("))
        else {
            continue;
        };
        let Some(parts) = lines[i + 1]
            .trim()
            .strip_prefix('[')
            .and_then(|l| l.strip_suffix("].into(),"))
        else {
            continue;
        };
        if lines[i + 2].trim() != "1," || lines[i + 3].trim() != ");" {
            continue;
        }
        let parts: Option<Vec<(usize, String)>> = parts
            .split(", ")
            .map(|part| {
                let definition = format!("let {part} = crate::model::cpu::conv2d(&self.");
                let at = (start..i).find(|&j| lines[j].trim().starts_with(&definition))?;
                let field = lines[at].trim()[definition.len()..].split_once(", ")?.0;
                (uses(&body, part) == 2).then(|| (at, field.to_string()))
            })
            .collect();
        if let Some(parts) = parts.filter(|p| p.len() > 1) {
            concats.push((i, name.to_string(), parts));
        }
    }
    // From the last, so that earlier line numbers hold.
    for (at, name, parts) in concats.into_iter().rev() {
        let slots = format!("{name}_parts");
        let operands = lines[at + 1]
            .trim()
            .trim_end_matches(".into(),")
            .to_string();
        lines.splice(
            at..at + 4,
            [format!("        let {name} = {slots}.finish({operands});")],
        );
        for (k, (line, field)) in parts.iter().enumerate() {
            lines[*line] = lines[*line].replacen(
                &format!("crate::model::cpu::conv2d(&self.{field}, "),
                &format!("{slots}.conv2d({k}, &self.{field}, "),
                1,
            );
        }
        let first = parts.iter().map(|(line, _)| *line).min().unwrap_or(at);
        let convs: Vec<String> = parts.iter().map(|(_, f)| format!("&self.{f}")).collect();
        lines.insert(
            first,
            format!(
                "        let {slots} = crate::model::cpu::Concat::new([{}]);",
                convs.join(", ")
            ),
        );
    }
    lines.join("\n") + "\n"
}

/// The generated `forward`'s lines: from its signature to before its closing brace (or the end).
fn forward_lines(lines: &[impl AsRef<str>]) -> Option<(usize, usize)> {
    let start = lines
        .iter()
        .position(|l| l.as_ref().trim_start().starts_with("pub fn forward("))?;
    let end = lines[start..]
        .iter()
        .position(|l| l.as_ref().starts_with("    }"))
        .map_or(lines.len(), |i| start + i);
    Some((start, end))
}

/// `let NAME = self.FIELD.forward(ARG);` with FIELD starting with `kind`.
fn module_call(line: &str, kind: &str) -> Option<(String, String, String)> {
    let rest = line.trim().strip_prefix("let ")?;
    let (name, rest) = rest.split_once(" = self.")?;
    let (field, rest) = rest.split_once(".forward(")?;
    let arg = rest.strip_suffix(");")?;
    let plain = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_');
    let input = arg.strip_suffix(".clone()").unwrap_or(arg);
    (field.starts_with(kind) && plain(name) && plain(field) && plain(input))
        .then(|| (name.to_string(), field.to_string(), arg.to_string()))
}

/// A `LocalResponseNormConfig::new(SIZE)…init().forward(ARG);` statement spanning `lines`:
/// `let NAME = crate::model::cpu::lrn(ARG, SIZE, ALPHA, BETA, K);`, burn's defaults where the
/// generated code sets none.
fn lrn_call(lines: &[&str]) -> Option<String> {
    let first = lines.first()?.trim().strip_prefix("let ")?;
    let (name, rest) = first.split_once(" = LocalResponseNormConfig::new(")?;
    let size = rest.strip_suffix(')')?.trim_end_matches(" as usize");
    let mut params = [
        ("with_alpha", "0.0001f64".to_string()),
        ("with_beta", "0.75f64".to_string()),
        ("with_k", "1.0f64".to_string()),
    ];
    let mut arg = None;
    for line in &lines[1..] {
        let line = line.trim();
        if let Some(a) = line
            .strip_prefix(".forward(")
            .and_then(|a| a.strip_suffix(");"))
        {
            arg = Some(a);
            continue;
        }
        for (method, value) in &mut params {
            if let Some(v) = line
                .strip_prefix(&format!(".{method}("))
                .and_then(|v| v.strip_suffix(')'))
            {
                *value = v.to_string();
            }
        }
    }
    let [(_, alpha), (_, beta), (_, k)] = params;
    Some(format!(
        "        let {name} = crate::model::cpu::lrn({arg}, {size}, {alpha}, {beta}, {k});",
        arg = arg?
    ))
}

/// `let NAME = burn::tensor::activation::relu(INPUT);` or `let NAME = INPUT.clamp(LO, HI);`:
/// NAME and the activation's variant.
fn activation_of(line: &str, input: &str) -> Option<(String, String)> {
    let rest = line.trim().strip_prefix("let ")?;
    let (name, call) = rest.split_once(" = ")?;
    if call == format!("burn::tensor::activation::relu({input});") {
        return Some((name.to_string(), "Relu".to_string()));
    }
    let bounds = call
        .strip_prefix(&format!("{input}.clamp("))?
        .strip_suffix(");")?;
    let (lo, hi) = bounds.split_once(", ")?;
    let number = |s: &str| s.strip_suffix("f64").and_then(|n| n.parse::<f64>().ok());
    let (lo, hi) = (number(lo)?, number(hi)?);
    Some((name.to_string(), format!("Clamp({lo:?}, {hi:?})")))
}

/// How many times `ident` occurs in `text` as a whole identifier.
pub(crate) fn uses(text: &str, ident: &str) -> usize {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(ident)
        .filter(|(at, _)| {
            let before = text[..*at].chars().next_back();
            let after = text[at + ident.len()..].chars().next();
            !before.is_some_and(word) && !after.is_some_and(word)
        })
        .count()
}

/// Feature `layer-profile`: a `mark` after every statement of the generated `forward`, so that
/// `glassbox::model::layers` can charge each one its time. Convolutions are marked with their
/// module, whose kernel size and groups name the kind of work.
pub(crate) fn instrument(source: &str) -> String {
    let mut out = String::with_capacity(source.len() * 2);
    let mut in_forward = false;
    let mut pending: Option<(String, Option<String>)> = None;
    for line in source.lines() {
        out.push_str(line);
        out.push('\n');
        let trimmed = line.trim_start();
        if trimmed.starts_with("pub fn forward(") {
            in_forward = true;
            continue;
        }
        if !in_forward {
            continue;
        }
        if line.starts_with("    }") {
            in_forward = false;
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("let ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // A concatenation's set-up names its convolutions but runs none of them.
            let conv = (!rest.contains("Concat::new("))
                .then_some(())
                .and_then(|()| rest.split_once("self.conv2d"))
                .map(|(_, call)| {
                    let digits: String = call.chars().take_while(char::is_ascii_digit).collect();
                    format!("conv2d{digits}")
                });
            if !name.is_empty() {
                pending = Some((name, conv));
            }
        }
        if trimmed.ends_with(';')
            && let Some((name, conv)) = pending.take()
        {
            match conv {
                Some(field) => writeln!(
                    out,
                    "        crate::model::layers::mark_conv({name:?}, &self.{field});"
                ),
                None => writeln!(out, "        crate::model::layers::mark({name:?});"),
            }
            .ok();
        }
    }
    out
}
