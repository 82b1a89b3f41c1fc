//! Tokens and cost per agent: the operator's price table (`[costs.models]`),
//! the reading of an agent's `usage` report, and the cost of a call.
//!
//! Who talks to it: the `openai` and `http` backends read an answer's
//! `usage` with [`usage_of_answer`] and price it with [`CostSettings::usage`];
//! `POST /api/v1/recommendations` prices the counts a client sends the same
//! way; the totals (`GET /api/v1/learning/costs`, the per-agent metrics, the
//! CSV and the `swarmwise_agent_tokens_total` / `swarmwise_agent_cost_usd_total`
//! series) are sums the store computes over the recorded rows.
//!
//! ## The formula
//!
//! `cost_usd = prompt_tokens × prompt_per_million / 10^6
//!           + completion_tokens × completion_per_million / 10^6`
//! (the way OpenAI, Anthropic and most providers publish prices: US dollars
//! per million input and output tokens). The cost is `None` (unknown) when
//! the model has no row in the table or either count is unknown: a cost
//! computed from half a usage report would understate the spend while
//! looking exact. Prices are read when a recommendation is tracked: a later
//! change of the table does not reprice stored rows.
//!
//! ## Untrusted values
//!
//! An agent's answer and a client's request are tenant data:
//! - a token count is used only when it is a JSON integer in
//!   `0..=MAX_TOKENS` (10^9). From an agent, anything else (negative,
//!   fractional, `1e30`, a string) is **dropped**: the count is recorded as
//!   unknown and the answer itself is still accepted (a bad usage report
//!   says nothing about the recommendation). Over the API it is **refused**
//!   with 400/422 naming the field: the client can fix its request.
//! - a model name is kept only when it is 1–128 bytes of
//!   `[A-Za-z0-9._:/@+-]` ([`valid_model_name`]); an agent's otherwise falls
//!   back to the model its config asked for, a client's is refused.
//! - a cost is never read from anyone: the API refuses a `cost_usd` field
//!   (unknown field) and backends ignore one in an answer.
//! - a metric label carries a model name only when it is a key of the price
//!   table (the operator's closed set); any other model is `_other`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use swarmwise_actors::domain::{valid_model_name, TokenUsage, MAX_TOKENS};

/// The label value of models outside the price table.
pub const OTHER_MODEL: &str = "_other";

/// Most rows of the price table (each may become a metric label value).
pub const MAX_PRICED_MODELS: usize = 1_000;

/// Highest price accepted, USD per million tokens: far above any real price,
/// low enough that a cost of 10^9 tokens stays a finite, exact-enough float.
pub const MAX_PRICE_PER_MILLION: f64 = 1_000_000.0;

/// `[costs]`: the price table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostSettings {
    /// `[costs.models."NAME"]`: prices of the model `NAME` (the name an
    /// OpenAI-compatible answer reports in `model`, or the `model` an agent's
    /// config asks for). Empty by default: tokens are recorded, costs are
    /// null.
    pub models: BTreeMap<String, ModelPrice>,
}

/// Prices of one model, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// USD per million prompt (input) tokens.
    pub prompt_per_million: f64,
    /// USD per million completion (output) tokens.
    pub completion_per_million: f64,
}

impl CostSettings {
    /// Checks the table; the error names the offending key
    /// (`costs.models."NAME".prompt_per_million`).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.models.len() > MAX_PRICED_MODELS {
            return Err((
                "costs.models".into(),
                format!(
                    "{} models: at most {MAX_PRICED_MODELS} (each may become a metric label value)",
                    self.models.len()
                ),
            ));
        }
        for (name, price) in &self.models {
            if !valid_model_name(name) {
                return Err((
                    format!("costs.models.{name:?}"),
                    "a model name is 1-128 characters of letters, digits and . _ : / @ + - (as the provider spells it, e.g. \"gpt-4o-mini\")".into(),
                ));
            }
            for (field, value) in [
                ("prompt_per_million", price.prompt_per_million),
                ("completion_per_million", price.completion_per_million),
            ] {
                if !(value.is_finite() && (0.0..=MAX_PRICE_PER_MILLION).contains(&value)) {
                    return Err((
                        format!("costs.models.{name:?}.{field}"),
                        format!("must be a number of US dollars per million tokens in [0, {MAX_PRICE_PER_MILLION}], got {value}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The price row used for a call: the answering model's, else the
    /// requested model's (providers answer `gpt-4o-mini` requests as
    /// `gpt-4o-mini-2024-07-18`). Returns the row's key too.
    pub fn price_of<'a>(
        &'a self,
        answering: Option<&str>,
        requested: Option<&str>,
    ) -> Option<(&'a str, &'a ModelPrice)> {
        [answering, requested]
            .into_iter()
            .flatten()
            .find_map(|m| self.models.get_key_value(m))
            .map(|(k, p)| (k.as_str(), p))
    }

    /// The usage to record for a call: the model kept (answering, else
    /// requested), the counts, and the cost when priced (module docs).
    pub fn usage(
        &self,
        answering: Option<&str>,
        requested: Option<&str>,
        prompt_tokens: Option<u64>,
        completion_tokens: Option<u64>,
    ) -> TokenUsage {
        let cost_usd = match (
            self.price_of(answering, requested),
            prompt_tokens,
            completion_tokens,
        ) {
            (Some((_, p)), Some(prompt), Some(completion)) => Some(cost(p, prompt, completion)),
            _ => None,
        };
        TokenUsage {
            model: answering.or(requested).map(str::to_owned),
            prompt_tokens,
            completion_tokens,
            cost_usd,
        }
    }

    /// The metric label of a call's model: its price-table key, else `_other`.
    pub fn label(&self, answering: Option<&str>, requested: Option<&str>) -> &str {
        self.price_of(answering, requested)
            .map_or(OTHER_MODEL, |(k, _)| k)
    }
}

/// `prompt × prompt price / 10^6 + completion × completion price / 10^6`, USD.
pub fn cost(price: &ModelPrice, prompt_tokens: u64, completion_tokens: u64) -> f64 {
    prompt_tokens as f64 * price.prompt_per_million / 1e6
        + completion_tokens as f64 * price.completion_per_million / 1e6
}

/// A token count from an agent's JSON: an integer in `0..=MAX_TOKENS`, else
/// unknown (module docs).
fn count(v: Option<&Value>) -> Option<u64> {
    v.and_then(Value::as_u64).filter(|n| *n <= MAX_TOKENS)
}

/// What an agent's answer says it consumed: `(model, prompt_tokens,
/// completion_tokens)`, each `None` when absent or out of bounds. Reads the
/// OpenAI chat-completions shape `{"model": …, "usage": {"prompt_tokens": …,
/// "completion_tokens": …}}`, and `input_tokens` / `output_tokens` (the
/// Responses and Anthropic names) when the first are absent.
pub fn usage_of_answer(body: &Value) -> (Option<String>, Option<u64>, Option<u64>) {
    let usage = body.get("usage");
    let field = |a: &str, b: &str| {
        let u = usage?;
        match u.get(a) {
            Some(v) => count(Some(v)),
            None => count(u.get(b)),
        }
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| valid_model_name(m))
        .map(str::to_owned);
    (
        model,
        field("prompt_tokens", "input_tokens"),
        field("completion_tokens", "output_tokens"),
    )
}

/// Counts a call's tokens on this node: `swarmwise_model_tokens_total{model,
/// kind}`, with `model` a price-table key or `_other`. Every answered call
/// counts, including one whose content then fails validation: the tokens
/// were spent.
pub fn observe_call(prices: &CostSettings, usage: &TokenUsage, requested: Option<&str>) {
    let model = prices.label(usage.model.as_deref(), requested).to_owned();
    for (kind, n) in [
        ("prompt", usage.prompt_tokens),
        ("completion", usage.completion_tokens),
    ] {
        if let Some(n) = n {
            metrics::counter!("swarmwise_model_tokens_total", "model" => model.clone(), "kind" => kind)
                .increment(n);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn table() -> CostSettings {
        let mut models = BTreeMap::new();
        models.insert(
            "gpt-4o-mini".to_owned(),
            ModelPrice {
                prompt_per_million: 0.15,
                completion_per_million: 0.60,
            },
        );
        CostSettings { models }
    }

    #[test]
    fn cost_is_tokens_times_price_per_million_per_side() {
        let u = table().usage(Some("gpt-4o-mini"), None, Some(1_000_000), Some(500_000));
        assert!((u.cost_usd.unwrap() - (0.15 + 0.30)).abs() < 1e-12);
        // A dated answer is priced by the requested model's row.
        let u = table().usage(
            Some("gpt-4o-mini-2024-07-18"),
            Some("gpt-4o-mini"),
            Some(2_000),
            Some(0),
        );
        assert_eq!(u.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        assert!((u.cost_usd.unwrap() - 0.0003).abs() < 1e-12);
        // Unknown model, or a count unknown: tokens kept, cost unknown.
        let u = table().usage(Some("llama3"), Some("llama3"), Some(10), Some(10));
        assert_eq!((u.prompt_tokens, u.cost_usd), (Some(10), None));
        assert_eq!(
            table()
                .usage(Some("gpt-4o-mini"), None, Some(10), None)
                .cost_usd,
            None
        );
    }

    #[test]
    fn absurd_usage_from_an_agent_is_dropped_not_trusted() {
        for bad in [
            json!(-1),
            json!(1e30),
            json!("12"),
            json!(1.5),
            json!(1_000_000_001u64),
            json!(null),
        ] {
            let (_, p, c) =
                usage_of_answer(&json!({"usage": {"prompt_tokens": bad, "completion_tokens": 3}}));
            assert_eq!((p, c), (None, Some(3)), "{bad}");
        }
        let (m, p, c) = usage_of_answer(
            &json!({"model": "x\"}\n", "usage": {"input_tokens": 7, "output_tokens": 8}}),
        );
        assert_eq!((m, p, c), (None, Some(7), Some(8)));
        let (m, ..) = usage_of_answer(&json!({"model": "a".repeat(129)}));
        assert_eq!(m, None);
        assert_eq!(
            usage_of_answer(&json!({"usage": "lots"})),
            (None, None, None)
        );
    }

    #[test]
    fn labels_come_only_from_the_price_table() {
        let t = table();
        assert_eq!(t.label(Some("gpt-4o-mini"), None), "gpt-4o-mini");
        assert_eq!(t.label(Some("=cmd|' /C calc'!A0"), None), OTHER_MODEL);
        assert_eq!(t.label(None, None), OTHER_MODEL);
    }

    #[test]
    fn the_table_is_validated_naming_the_key() {
        let mut t = table();
        assert!(t.validate().is_ok());
        t.models
            .get_mut("gpt-4o-mini")
            .unwrap()
            .completion_per_million = f64::NAN;
        assert_eq!(
            t.validate().unwrap_err().0,
            "costs.models.\"gpt-4o-mini\".completion_per_million"
        );
        let mut t = table();
        t.models.get_mut("gpt-4o-mini").unwrap().prompt_per_million = -1.0;
        assert!(t.validate().unwrap_err().0.ends_with("prompt_per_million"));
        let mut t = table();
        t.models.insert(
            "bad name".into(),
            ModelPrice {
                prompt_per_million: 1.0,
                completion_per_million: 1.0,
            },
        );
        assert_eq!(t.validate().unwrap_err().0, "costs.models.\"bad name\"");
    }
}
