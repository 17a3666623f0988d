//! What the REST routes answer with: attachments, message edits and deletes, webhook messages, interaction callbacks and follow-ups.

use super::*;

/// Attachment objects + bytes for a message create/edit. `existing` are the message's current
/// attachment objects (with `existing_files` their bytes) for edits.
pub(super) fn build_attachments(
    base: &str,
    channel_id: u64,
    body: &Value,
    parts: &[FilePart],
    existing: &[Value],
    existing_files: &[(String, Vec<u8>)],
) -> (Vec<Value>, Vec<(String, Vec<u8>)>) {
    let mut objects = Vec::new();
    let mut files = Vec::new();
    let mut used = vec![false; parts.len()];
    let new_attachment = |part: &FilePart, filename: Option<&str>, description: Option<&str>| {
        let name = filename.unwrap_or(&part.filename).to_string();
        let obj = model::attachment(
            model::snowflake(),
            base,
            channel_id,
            &name,
            part.bytes.len(),
            description,
            part.content_type.as_deref(),
        );
        (obj, (name, part.bytes.clone()))
    };
    match body.get("attachments").and_then(Value::as_array) {
        Some(list) => {
            for entry in list {
                let id = match &entry["id"] {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => continue,
                };
                let part_name = format!("files[{id}]");
                if let Some(i) = parts.iter().position(|p| p.name == part_name) {
                    used[i] = true;
                    let (o, f) = new_attachment(
                        &parts[i],
                        entry["filename"].as_str(),
                        entry["description"].as_str(),
                    );
                    objects.push(o);
                    files.push(f);
                } else if let Some(i) = existing.iter().position(|e| e["id"] == json!(id)) {
                    objects.push(existing[i].clone());
                    files.push(existing_files.get(i).cloned().unwrap_or_default());
                }
            }
        }
        None => {
            objects.extend(existing.iter().cloned());
            files.extend(existing_files.iter().cloned());
        }
    }
    for (i, part) in parts.iter().enumerate() {
        if !used[i] {
            let (o, f) = new_attachment(part, None, None);
            objects.push(o);
            files.push(f);
        }
    }
    (objects, files)
}

/// Applies an edit body to a stored message; returns the new object.
pub(super) fn edit_message(
    st: &mut State,
    base: &str,
    id: u64,
    body: &Value,
    parts: &[FilePart],
) -> Value {
    let Some(msg) = st.messages.get_mut(&id) else {
        return Value::Null;
    };
    let channel_id = msg.raw["channel_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let existing: Vec<Value> = msg.raw["attachments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let (attachments, files) =
        build_attachments(base, channel_id, body, parts, &existing, &msg.files);
    let raw = &mut msg.raw;
    if let Some(c) = body.get("content") {
        raw["content"] = json!(c.as_str().unwrap_or(""));
    }
    if let Some(e) = body.get("embeds") {
        raw["embeds"] = json!(model::normalize_embeds(
            e.as_array().map(Vec::as_slice).unwrap_or(&[])
        ));
    }
    if let Some(c) = body.get("components") {
        raw["components"] = if c.is_array() { c.clone() } else { json!([]) };
    }
    let mut flags = raw["flags"].as_u64().unwrap_or(0) & !FLAG_LOADING;
    if let Some(f) = body.get("flags").and_then(Value::as_u64) {
        // Only SUPPRESS_EMBEDS (and the components-v2 marker) can be changed by an edit.
        const EDITABLE: u64 = (1 << 2) | (1 << 15);
        flags = (flags & !EDITABLE) | (f & EDITABLE);
    }
    raw["flags"] = json!(flags);
    raw["attachments"] = json!(attachments);
    raw["edited_timestamp"] = json!(model::now_iso());
    msg.files = files;
    msg.raw.clone()
}

pub(super) fn delete_message(st: &mut State, id: u64) {
    if let Some(m) = st.messages.get_mut(&id) {
        m.deleted = true;
    }
    for c in st.channels.values_mut() {
        c.messages.retain(|m| *m != id);
    }
}

/// Creates an interaction response / follow-up message.
pub(super) fn new_webhook_message(
    st: &mut State,
    base: &str,
    channel_id: u64,
    body: &Value,
    parts: &[FilePart],
    extra_flags: u64,
) -> (u64, Value) {
    let id = model::snowflake();
    let (attachments, files) = build_attachments(base, channel_id, body, parts, &[], &[]);
    let raw = model::message(model::NewMessage {
        id,
        channel_id,
        app_id: FakeDiscord::APPLICATION_ID,
        kind: 20,
        webhook: true,
        body,
        extra_flags,
        attachments,
    });
    st.insert_message(raw.clone(), files);
    (id, raw)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn callback(
    st: &mut State,
    base: &str,
    id: &str,
    token: &str,
    body: &Value,
    parts: &[FilePart],
    with_response: bool,
    violations: &mut Vec<String>,
) -> Reply {
    let interaction_id = parse_id(id).unwrap_or(0);
    let Some(inter) = st
        .interactions
        .get(&interaction_id)
        .filter(|i| i.token == token)
        .cloned()
    else {
        violations.push(format!(
            "callback for unknown interaction {id} (or wrong token)"
        ));
        return Reply::error(404, 10062, "Unknown interaction");
    };
    let label = &inter.label;
    if inter.callback.is_some() {
        violations.push(format!("{label}: interaction {id} acknowledged twice"));
        return Reply::error(400, 40060, "Interaction has already been acknowledged.");
    }
    if let (Some(deadline), Some(sent)) = (st.callback_deadline, inter.sent_at) {
        let elapsed = sent.elapsed();
        if elapsed > deadline {
            violations.push(format!(
                "{label}: callback {} ms after the dispatch (limit {} ms)",
                elapsed.as_millis(),
                deadline.as_millis()
            ));
            return Reply::error(404, 10062, "Unknown interaction");
        }
    }
    let kind = body["type"].as_u64().unwrap_or(0) as u8;
    let data = body.get("data").cloned().unwrap_or(Value::Null);
    let flags = data["flags"].as_u64().unwrap_or(0);
    let ephemeral = flags & FLAG_EPHEMERAL != 0;
    let allowed = match (inter.kind, kind) {
        (4, 8) => true,
        (4, _) | (_, 8) => false,
        (_, 4 | 5) => true,
        (3, 6 | 7) => true,
        (5, 6) => true,
        (5, 7) => inter.message_id.is_some(),
        (2 | 3, 9) => true,
        _ => false,
    };
    if !allowed {
        violations.push(format!(
            "{label}: callback type {kind} is not valid for interaction type {}",
            inter.kind
        ));
        return Reply::error(400, 50035, "Invalid Form Body (interaction callback type)");
    }
    let mut original = None;
    let mut loading = false;
    let mut message = None;
    match kind {
        4 => {
            let (mid, raw) = new_webhook_message(
                st,
                base,
                inter.channel_id,
                &data,
                parts,
                flags & FLAG_EPHEMERAL,
            );
            original = Some(mid);
            message = Some(raw);
        }
        5 => {
            let empty = json!({});
            let (mid, raw) = new_webhook_message(
                st,
                base,
                inter.channel_id,
                &empty,
                &[],
                FLAG_LOADING | (flags & FLAG_EPHEMERAL),
            );
            original = Some(mid);
            loading = true;
            message = Some(raw);
        }
        6 => {
            original = inter.message_id;
            message = inter
                .message_id
                .and_then(|m| st.message(m))
                .map(|m| m.raw.clone());
        }
        7 => {
            if let Some(mid) = inter.message_id {
                if st.message(mid).is_some() {
                    message = Some(edit_message(st, base, mid, &data, parts));
                } else {
                    violations.push(format!(
                        "{label}: update of a message the fake does not know"
                    ));
                }
                original = Some(mid);
            }
        }
        _ => {}
    }
    let at = Instant::now();
    let entry = st
        .interactions
        .get_mut(&interaction_id)
        .expect("interaction exists");
    entry.callback = Some(Callback {
        kind,
        ephemeral,
        at,
        data,
    });
    entry.original = original;
    entry.original_loading = loading;
    if with_response {
        let mut resource = json!({"type": kind});
        if let Some(m) = message {
            resource["message"] = m;
        }
        Reply::ok(json!({
            "interaction": {
                "id": interaction_id.to_string(),
                "type": inter.kind,
                "response_message_id": original.map(|m| m.to_string()),
                "response_message_loading": loading,
                "response_message_ephemeral": ephemeral,
            },
            "resource": resource,
        }))
    } else {
        Reply::no_content()
    }
}

pub(super) fn interaction_for_token(
    st: &State,
    token: &str,
    violations: &mut Vec<String>,
) -> Result<u64, Reply> {
    match st.tokens.get(token) {
        Some(id) => Ok(*id),
        None => {
            violations.push("webhook call with an unknown interaction token".to_string());
            Err(Reply::error(404, 10015, "Unknown Webhook"))
        }
    }
}

pub(super) fn followup(
    st: &mut State,
    base: &str,
    token: &str,
    body: &Value,
    parts: &[FilePart],
    violations: &mut Vec<String>,
) -> Reply {
    let iid = match interaction_for_token(st, token, violations) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let inter = st.interactions[&iid].clone();
    if inter.callback.is_none() {
        violations.push(format!(
            "{}: follow-up sent before the interaction was acknowledged",
            inter.label
        ));
        return Reply::error(404, 10015, "Unknown Webhook");
    }
    // The first follow-up after a deferred response replaces the "thinking" message.
    if inter.original_loading {
        if let Some(mid) = inter.original.filter(|m| st.message(*m).is_some()) {
            let raw = edit_message(st, base, mid, body, parts);
            st.interactions
                .get_mut(&iid)
                .expect("exists")
                .original_loading = false;
            return Reply::ok(raw);
        }
    }
    let flags = body["flags"].as_u64().unwrap_or(0) & FLAG_EPHEMERAL;
    let (mid, raw) = new_webhook_message(st, base, inter.channel_id, body, parts, flags);
    st.interactions
        .get_mut(&iid)
        .expect("exists")
        .followups
        .push(mid);
    Reply::ok(raw)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn webhook_message(
    st: &mut State,
    base: &str,
    method: &str,
    token: &str,
    mid: &str,
    body: &Value,
    parts: &[FilePart],
    violations: &mut Vec<String>,
) -> Reply {
    let iid = match interaction_for_token(st, token, violations) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let inter = st.interactions[&iid].clone();
    let target = if mid == "@original" {
        inter.original
    } else {
        parse_id(mid).filter(|m| inter.followups.contains(m) || inter.original == Some(*m))
    };
    let Some(target) = target.filter(|m| st.message(*m).is_some()) else {
        violations.push(format!(
            "{}: {method} webhook message {mid} that does not exist (callback: {:?})",
            inter.label,
            inter.callback.as_ref().map(|c| c.kind)
        ));
        return Reply::error(404, 10008, "Unknown Message");
    };
    match method {
        "GET" => Reply::ok(st.messages[&target].raw.clone()),
        "DELETE" => {
            delete_message(st, target);
            Reply::no_content()
        }
        _ => {
            let raw = edit_message(st, base, target, body, parts);
            if Some(target) == inter.original {
                st.interactions
                    .get_mut(&iid)
                    .expect("exists")
                    .original_loading = false;
            }
            Reply::ok(raw)
        }
    }
}
