//! The encoder's tokenizer: a Hugging Face `tokenizer.json` (WordPiece for BERT, with the
//! normaliser's lower-casing and accent stripping as the file configures them), adding [CLS]
//! and [SEP] and truncating to a maximum length the way transformers does. Any padding or
//! truncation stored in the file (sentence-transformers ships MiniLM's with a fixed 128) is
//! replaced by ours.

use std::path::Path;

use tokenizers::{PostProcessor, Tokenizer, TruncationParams};

/// Turns texts into model-ready token ids.
#[derive(Clone)]
pub struct EncoderTokenizer {
    inner: Tokenizer,
    /// Most tokens per text, [CLS] and [SEP] included.
    pub max_length: usize,
    /// The id padding positions get (never seen by the model: they are masked).
    pub pad_id: u32,
}

impl EncoderTokenizer {
    /// Reads `tokenizer.json`; `max_length` must leave room for the special tokens.
    pub fn from_file(path: &Path, max_length: usize, pad_id: u32) -> Result<EncoderTokenizer, String> {
        let mut inner = Tokenizer::from_file(path).map_err(|e| format!("{}: not a tokenizer.json: {e}", path.display()))?;
        inner.with_padding(None);
        let specials = inner.get_post_processor().map_or(0, |p| p.added_tokens(false));
        if max_length <= specials {
            return Err(format!("max_length {max_length} leaves no room for text beside the {specials} special tokens"));
        }
        inner
            .with_truncation(Some(TruncationParams { max_length, ..Default::default() }))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(EncoderTokenizer { inner, max_length, pad_id })
    }

    /// Token ids of one text: [CLS] text [SEP], cut to `max_length`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        Ok(self.inner.encode_fast(text, true).map_err(|e| e.to_string())?.get_ids().to_vec())
    }

    /// Token ids of many texts (in parallel where the tokenizer can).
    pub fn encode_all(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, String> {
        let enc = self.inner.encode_batch_fast(texts.to_vec(), true).map_err(|e| e.to_string())?;
        Ok(enc.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}
