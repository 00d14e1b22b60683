//! Chat templates: the model's own Jinja template rendered with minijinja the way Hugging Face
//! `apply_chat_template` renders it (trim_blocks, lstrip_blocks, Python string methods).

use minijinja::{context, Environment, Error, ErrorKind};
use serde::Serialize;

/// One chat message.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// The messages a prompt row is rendered from: its system text (if any), then the user's
/// prompt. `generate` and `dpo` both build them here, so DPO scores exactly what was generated.
pub fn prompt_messages(system: Option<&str>, prompt: &str) -> Vec<Message> {
    let mut messages = Vec::with_capacity(2);
    if let Some(s) = system {
        messages.push(Message { role: "system".into(), content: s.to_string() });
    }
    messages.push(Message { role: "user".into(), content: prompt.to_string() });
    messages
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    pub fn new(source: &str, bos_token: Option<&str>, eos_token: Option<&str>) -> Result<ChatTemplate, String> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, Error> { Err(Error::new(ErrorKind::InvalidOperation, msg)) });
        env.add_function("strftime_now", |fmt: String| -> String {
            // Templates use it for "today's date" lines; a fixed date keeps prompts (and so
            // cache keys and outputs) reproducible.
            fmt.replace("%d", "26").replace("%B", "July").replace("%b", "Jul").replace("%Y", "2024").replace("%m", "07")
        });
        env.add_template_owned("chat", source.to_string()).map_err(|e| format!("the chat template does not parse: {e}"))?;
        Ok(ChatTemplate { env, bos_token: bos_token.unwrap_or("").to_string(), eos_token: eos_token.unwrap_or("").to_string() })
    }

    /// The prompt text for `messages`, ending with the assistant's turn opener when
    /// `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, String> {
        let t = self.env.get_template("chat").map_err(|e| e.to_string())?;
        t.render(context! { messages => messages, add_generation_prompt => add_generation_prompt, bos_token => self.bos_token, eos_token => self.eos_token })
            .map_err(|e| format!("the chat template failed: {e}"))
    }
}
