//! Models' own chat templates rendered by dagrun (minijinja) against transformers' rendering
//! (`fixtures/llm/chat_templates.json`, made by `make_chat_template_fixture.py`): a prompt that
//! differs by one character from the model's is another prompt. The templates are llama.cpp's
//! copies in the llama-cpp-python sdist the vocabulary tests fetch.

use super::chat::{ChatTemplate, Message};
use super::vocab_tests::vocabs;

#[derive(serde::Deserialize)]
struct Fixture {
    templates: std::collections::BTreeMap<String, Template>,
}

#[derive(serde::Deserialize)]
struct Template {
    bos_token: Option<String>,
    eos_token: Option<String>,
    renders: Vec<Render>,
}

#[derive(serde::Deserialize)]
struct Render {
    messages: Vec<Message>,
    add_generation_prompt: bool,
    /// transformers' text, or its error when the template refuses the conversation.
    text: Option<String>,
    error: Option<String>,
}

/// Llama 3.1/3.2/3.3, Qwen2.5, Qwen3, QwQ, Phi-3.5, Mistral Nemo, the DeepSeek-R1 distills and
/// Gemma 2 render every conversation (system message or not, prompt or whole conversation, with
/// non-ASCII text and leading spaces) exactly as transformers does, and refuse what it refuses.
#[test]
fn chat_templates_render_as_transformers_renders_them() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/llm/chat_templates.json");
    let fx: Fixture = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(fx.templates.len(), 11);
    let dir = vocabs().join("templates");
    let mut failures = Vec::new();
    for (name, t) in &fx.templates {
        let source = std::fs::read_to_string(dir.join(format!("{name}.jinja"))).unwrap();
        let template = ChatTemplate::new(&source, t.bos_token.as_deref(), t.eos_token.as_deref()).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (i, r) in t.renders.iter().enumerate() {
            let got = template.render(&r.messages, r.add_generation_prompt);
            match (&r.text, &r.error, got) {
                (Some(want), _, Ok(got)) if *want == got => {}
                (Some(want), _, got) => failures.push(format!("{name} case {i}: transformers {want:?}\n  dagrun {got:?}")),
                (None, Some(error), Ok(got)) => failures.push(format!("{name} case {i}: transformers refuses ({error}), dagrun renders {got:?}")),
                (None, Some(error), Err(e)) => assert!(e.contains(error.as_str()), "{name} case {i}: {e} (transformers: {error})"),
                (None, None, _) => panic!("{name} case {i}: neither text nor error in the fixture"),
            }
        }
    }
    assert!(failures.is_empty(), "{} renders differ:\n{}", failures.len(), failures.join("\n"));
}
