//! The exporter's run log (`BASE.log.jsonl`, one JSON object per evaluation, written by
//! `folio_exporter::train`) and the `folio.train` metadata of a model file.
use anyhow::{bail, Context, Result};
use serde_json::Value;

/// One evaluation of a run (the exporter's `LogLine`).
#[derive(Clone, Debug, PartialEq)]
pub struct Eval {
    /// Optimiser steps done.
    pub iter: usize,
    /// Estimated train loss.
    pub train_loss: f64,
    /// Estimated val loss.
    pub val_loss: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Mean seconds per step since the previous evaluation (0 for the first line).
    pub step_time: f64,
    /// Seconds this evaluation took.
    pub eval_time: f64,
    /// Training tokens per second since the previous evaluation.
    pub tokens_per_s: f64,
    /// Seconds since the run started.
    pub elapsed: f64,
    /// Seconds of each step since the previous evaluation (empty in older logs).
    pub step_times: Vec<f64>,
    /// The attention probe (`exporter train --probe-attention`), when logged.
    pub attention: Option<Probe>,
}

/// What the attention softmax saw at one evaluation (the exporter's `AttnProbe`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Probe {
    /// Variance of the attention logits inside the causal mask.
    pub logit_var: f64,
    /// Mean row entropy, nats.
    pub entropy: f64,
    /// Mean row entropy of uniform attention.
    pub uniform_entropy: f64,
    /// Mean largest probability of a row.
    pub max_prob: f64,
    /// L2 norm of the loss gradient at the logits.
    pub grad_norm: f64,
}

/// Parses a JSON-lines log. Blank lines are skipped; any other line that is not an
/// object with the eight keys is an error naming its line number.
pub fn parse_log(text: &str) -> Result<Vec<Eval>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("log line {}: not JSON", i + 1))?;
        let num = |key: &str| -> Result<f64> {
            v.get(key)
                .and_then(Value::as_f64)
                .with_context(|| format!("log line {}: no number {key:?}", i + 1))
        };
        let iter = v
            .get("iter")
            .and_then(Value::as_u64)
            .with_context(|| format!("log line {}: no integer \"iter\"", i + 1))?;
        let step_times = match v.get("step_times") {
            None => Vec::new(),
            Some(a) => a
                .as_array()
                .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<_>>>())
                .with_context(|| format!("log line {}: step_times is not numbers", i + 1))?,
        };
        let attention = match v.get("attention") {
            None => None,
            Some(p) => {
                let f = |key: &str| {
                    p.get(key).and_then(Value::as_f64).with_context(|| {
                        format!("log line {}: attention has no number {key:?}", i + 1)
                    })
                };
                Some(Probe {
                    logit_var: f("logit_var")?,
                    entropy: f("entropy")?,
                    uniform_entropy: f("uniform_entropy")?,
                    max_prob: f("max_prob")?,
                    grad_norm: f("grad_norm")?,
                })
            }
        };
        out.push(Eval {
            iter: iter as usize,
            train_loss: num("train_loss")?,
            val_loss: num("val_loss")?,
            lr: num("lr")?,
            step_time: num("step_time")?,
            eval_time: num("eval_time")?,
            tokens_per_s: num("tokens_per_s")?,
            elapsed: num("elapsed")?,
            step_times,
            attention,
        });
    }
    if out.windows(2).any(|w| w[1].iter <= w[0].iter) {
        bail!("log iterations are not increasing");
    }
    Ok(out)
}

/// The seconds of every training step when the log recorded them (`step_times`), else each
/// interval's mean (the first line, with no steps yet, left out); true when per step.
pub fn step_times(log: &[Eval]) -> (Vec<f64>, bool) {
    if log.iter().any(|e| !e.step_times.is_empty()) {
        return (
            log.iter()
                .flat_map(|e| e.step_times.iter().copied())
                .collect(),
            true,
        );
    }
    let means = log
        .iter()
        .filter(|e| e.step_time > 0.0)
        .map(|e| e.step_time);
    (means.collect(), false)
}

/// Parses the `folio.train` metadata value as the runtime returns it: the raw text
/// between the quotes of a JSON string (escapes not yet undone), holding a JSON object.
pub fn parse_train_meta(raw: &str) -> Result<Value> {
    let unescaped: String = serde_json::from_str(&format!("\"{raw}\""))
        .context("folio.train: not a valid JSON string")?;
    let v: Value = serde_json::from_str(&unescaped).context("folio.train: not JSON")?;
    if !v.is_object() {
        bail!("folio.train: not a JSON object");
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"{"iter":0,"train_loss":4.2,"val_loss":4.25,"lr":5e-5,"step_time":0.0,"eval_time":1.5,"tokens_per_s":0.0,"elapsed":1.6}

{"iter":250,"train_loss":2.1,"val_loss":2.2,"lr":0.005,"step_time":0.09,"eval_time":1.25,"tokens_per_s":22755.5,"elapsed":25.0}
"#;

    #[test]
    fn parses_the_exporter_log_lines() {
        let log = parse_log(LOG).unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log[1].iter, 250);
        assert_eq!(log[1].val_loss, 2.2);
        assert_eq!(log[1].lr, 0.005);
        assert_eq!(log[0].eval_time, 1.5);
        assert_eq!(log[1].tokens_per_s, 22755.5);
        assert_eq!(log[1].elapsed, 25.0);
        assert_eq!(step_times(&log), (vec![0.09], false));
        assert!(log[1].attention.is_none());
    }

    #[test]
    fn parses_per_step_times_and_the_attention_probe() {
        let text = r#"{"iter":0,"train_loss":4.2,"val_loss":4.25,"lr":5e-5,"step_time":0.0,"step_times":[],"eval_time":1.5,"tokens_per_s":0.0,"elapsed":1.6,"attention":{"logit_var":0.5,"entropy":2.0,"uniform_entropy":2.5,"max_prob":0.3,"grad_norm":0.01}}
{"iter":2,"train_loss":4.1,"val_loss":4.2,"lr":5e-5,"step_time":0.15,"step_times":[0.1,0.2],"eval_time":1.5,"tokens_per_s":9.0,"elapsed":2.0}
{"iter":3,"train_loss":4.0,"val_loss":4.1,"lr":5e-5,"step_time":0.3,"step_times":[0.3],"eval_time":1.5,"tokens_per_s":9.0,"elapsed":2.4}"#;
        let log = parse_log(text).unwrap();
        assert_eq!(step_times(&log), (vec![0.1, 0.2, 0.3], true));
        let p = log[0].attention.unwrap();
        assert_eq!((p.logit_var, p.max_prob, p.grad_norm), (0.5, 0.3, 0.01));
        assert!(parse_log(&text.replace("[0.1,0.2]", "[0.1,\"x\"]")).is_err());
        assert!(parse_log(&text.replace("\"max_prob\":0.3,", "")).is_err());
    }

    #[test]
    fn rejects_broken_or_unordered_logs() {
        let err = parse_log("{\"iter\":0}\n").unwrap_err().to_string();
        assert!(
            err.contains("line 1") && err.contains("train_loss"),
            "{err}"
        );
        assert!(parse_log("not json").is_err());
        let dup = format!(
            "{}\n{}",
            LOG.lines().next().unwrap(),
            LOG.lines().next().unwrap()
        );
        assert!(parse_log(&dup).is_err());
        assert!(parse_log("").unwrap().is_empty());
    }

    #[test]
    fn train_meta_is_unescaped_then_parsed() {
        // The header holds "folio.train": "{\"preset\":\"edge\",\"iters\":1500,\"note\":\"a\\\"b\"}";
        // the runtime hands back the text between the quotes.
        let raw = r#"{\"preset\":\"edge\",\"iters\":1500,\"note\":\"a\\\"b\"}"#;
        let v = parse_train_meta(raw).unwrap();
        assert_eq!(v["preset"], "edge");
        assert_eq!(v["iters"], 1500);
        assert_eq!(v["note"], "a\"b");
        assert!(parse_train_meta(r#"[1,2]"#).is_err());
        assert!(parse_train_meta(r#"{\"a\":"#).is_err());
    }
}
