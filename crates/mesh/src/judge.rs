//! `metric = "judge"`: a larger tier grades each answer. The rubric, rendered with the task's
//! inputs, the answer (`output`) and the reference (`expected`), is put to the judge as a label
//! question over ["Yes", "No"], through the same tier code as a label task's ladder: a local
//! judge scores both labels after the rubric (label log-likelihoods, softmax over the two), so
//! the score is P(yes); a remote judge answers one of them under a JSON-Schema enum, so the
//! score is 1 or 0.

use crate::error::TierError;
use crate::run::render;
use crate::task::{OutputKind, OutputSpec, Task};
use crate::tier_call::{self, Rendered};
use crate::tier_spec::TierSpec;
use crate::Mesh;
use engine::Priority;
use eval::Expected;
use std::collections::BTreeMap;

/// The judge's two answers; the score is the probability of the first.
pub const VERDICTS: [&str; 2] = ["Yes", "No"];
/// The judge's system message.
pub const SYSTEM: &str = "You are a strict grader. Read the question and answer with one word: Yes or No.";

/// A judge for one task: the judging tier and a label task built from the rubric.
pub(crate) struct Judge {
    task: Task,
    tier: TierSpec,
}

impl Judge {
    pub(crate) fn new(task: &Task, tier: TierSpec, rubric: &str) -> Judge {
        let mut t = task.clone();
        t.spec.inputs.extend(["output".to_string(), "expected".to_string()]);
        t.spec.system = Some(SYSTEM.into());
        t.spec.prompt = rubric.into();
        t.spec.output = OutputSpec {
            kind: OutputKind::Label,
            labels: VERDICTS.map(String::from).to_vec(),
            schema: None,
            schema_file: None,
            max_tokens: 16,
            validators: Vec::new(),
        };
        t.schema = None;
        Judge { task: t, tier }
    }

    /// The judging tier's id (`local:qwen2.5-1.5b`).
    pub(crate) fn id(&self) -> String {
        self.tier.id()
    }

    /// P(yes) for `output` as the answer to `inputs`, and what the verdict cost.
    pub(crate) async fn verdict(
        &self,
        mesh: &Mesh,
        inputs: &BTreeMap<String, String>,
        output: &str,
        expected: &Expected,
    ) -> Result<(f64, f64), TierError> {
        let mut vars = inputs.clone();
        vars.insert("output".into(), output.into());
        vars.insert("expected".into(), expected.as_text());
        let messages = render(&self.task, &vars)?;
        let r = Rendered {
            messages,
            inputs: &vars,
            priority: Priority::Batch,
        };
        let out = tier_call::run_timed(mesh, &self.task, &self.tier, &r).await?;
        let said_yes = out.output.as_str() == Some(VERDICTS[0]);
        let p_yes = out.signals["probs"][VERDICTS[0]]
            .as_f64()
            .unwrap_or(if said_yes { 1.0 } else { 0.0 });
        Ok((p_yes.clamp(0.0, 1.0), out.cost_usd))
    }
}
