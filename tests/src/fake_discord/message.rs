//! Messages and responses as the fake stores them (after all edits), with helpers for reading their text, embeds and buttons.

use super::*;

/// A message as currently stored by the fake (after all edits).
#[derive(Clone, Debug)]
pub struct Message {
    pub id: u64,
    pub channel_id: u64,
    pub content: String,
    pub embeds: Vec<Value>,
    pub components: Vec<Value>,
    /// Uploaded files: file name and bytes.
    pub attachments: Vec<(String, Vec<u8>)>,
    pub flags: u64,
    /// The full Discord message object as returned to the bot.
    pub raw: Value,
}

impl Message {
    pub(super) fn from_stored(m: &StoredMessage) -> Message {
        let raw = m.raw.clone();
        Message {
            id: state::id_of(&raw),
            channel_id: raw["channel_id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            content: raw["content"].as_str().unwrap_or("").to_string(),
            embeds: raw["embeds"].as_array().cloned().unwrap_or_default(),
            components: raw["components"].as_array().cloned().unwrap_or_default(),
            attachments: m.files.clone(),
            flags: raw["flags"].as_u64().unwrap_or(0),
            raw,
        }
    }

    /// Content plus every embed's author, title, description, field names/values and footer,
    /// plus components-v2 text displays, joined by newlines (for assertions).
    pub fn text(&self) -> String {
        let mut parts = Vec::new();
        if !self.content.is_empty() {
            parts.push(self.content.clone());
        }
        for e in &self.embeds {
            let mut push = |v: &Value| {
                if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
                    parts.push(s.to_string());
                }
            };
            push(&e["author"]["name"]);
            push(&e["title"]);
            push(&e["description"]);
            if let Some(fields) = e["fields"].as_array() {
                for f in fields {
                    push(&f["name"]);
                    push(&f["value"]);
                }
            }
            push(&e["footer"]["text"]);
        }
        fn text_displays(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Array(a) => a.iter().for_each(|c| text_displays(c, out)),
                Value::Object(o) => {
                    if o.get("type").and_then(Value::as_u64) == Some(10) {
                        if let Some(s) = o.get("content").and_then(Value::as_str) {
                            out.push(s.to_string());
                        }
                    }
                    for key in ["components", "accessory"] {
                        if let Some(c) = o.get(key) {
                            text_displays(c, out);
                        }
                    }
                }
                _ => {}
            }
        }
        for c in &self.components {
            text_displays(c, &mut parts);
        }
        parts.join("\n")
    }

    /// Every `custom_id` in the message's components (buttons, selects, nested layouts).
    pub fn custom_ids(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.components {
            collect_custom_ids(c, &mut out);
        }
        out
    }

    /// The approval button of kind `a` (approve), `d` (deny) or `c` (confirm): custom ids
    /// `apr:<id>:<kind>:<mac>`. Panics naming the buttons there are when it is missing.
    pub fn approval_button(&self, kind: &str) -> String {
        self.custom_ids()
            .into_iter()
            .find(|id| id.split(':').nth(2) == Some(kind))
            .unwrap_or_else(|| panic!("no {kind} button in {:?}", self.custom_ids()))
    }

    /// The component object with this `custom_id`, if any.
    pub fn component(&self, custom_id: &str) -> Option<Value> {
        fn find(v: &Value, id: &str) -> Option<Value> {
            match v {
                Value::Array(a) => a.iter().find_map(|c| find(c, id)),
                Value::Object(o) => {
                    if o.get("custom_id").and_then(Value::as_str) == Some(id) {
                        return Some(v.clone());
                    }
                    ["components", "accessory"]
                        .iter()
                        .find_map(|k| o.get(*k).and_then(|c| find(c, id)))
                }
                _ => None,
            }
        }
        self.components.iter().find_map(|c| find(c, custom_id))
    }

    /// Whether the message is ephemeral (flag 64).
    pub fn is_ephemeral(&self) -> bool {
        self.flags & model::FLAG_EPHEMERAL != 0
    }
}

pub(super) fn collect_custom_ids(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(a) => a.iter().for_each(|c| collect_custom_ids(c, out)),
        Value::Object(o) => {
            if let Some(id) = o.get("custom_id").and_then(Value::as_str) {
                out.push(id.to_string());
            }
            for key in ["components", "accessory"] {
                if let Some(c) = o.get(key) {
                    collect_custom_ids(c, out);
                }
            }
        }
        _ => {}
    }
}

/// What the user currently sees for one interaction.
#[derive(Clone, Debug)]
pub struct Response {
    /// Callback type: 4 message, 5 deferred, 6 deferred update, 7 update, 8 autocomplete, 9 modal.
    pub kind: u8,
    pub ephemeral: bool,
    /// The original response message after all edits (for 6/7: the clicked message).
    pub original: Option<Message>,
    pub followups: Vec<Message>,
    /// The modal (`data` of a type 9 callback).
    pub modal: Option<Value>,
    /// Autocomplete choices (`data.choices` of a type 8 callback).
    pub choices: Option<Value>,
    /// When the callback request arrived.
    pub callback_at: Instant,
    /// When the INTERACTION_CREATE dispatch was written to the socket (falls back to the
    /// creation time if it was never written).
    pub sent_at: Instant,
}

impl Response {
    /// Dispatch-to-callback latency.
    pub fn latency(&self) -> Duration {
        self.callback_at.saturating_duration_since(self.sent_at)
    }

    /// Text of the original and every follow-up (see [`Message::text`]), newline-joined.
    pub fn text(&self) -> String {
        self.original
            .iter()
            .chain(&self.followups)
            .map(Message::text)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The original and the follow-ups, in order.
    pub fn messages(&self) -> Vec<&Message> {
        self.original.iter().chain(&self.followups).collect()
    }
}
