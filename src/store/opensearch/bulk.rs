//! Writes to the OpenSearch store: `_bulk` NDJSON bodies (versioned `index` and `delete`
//! actions), requests of bounded size, and the per-item outcome of each answer.

use chrono::{DateTime, SecondsFormat, Utc};
use opensearch::http::Method;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

use super::transport::{SNIPPET_CHARS, truncate};
use super::{BACKEND, OpenSearchStore};
use crate::error::{ErrorClass, StoreError};
use crate::record::{Record, metadata_digest, validate_fields, validate_vector};
use crate::store::{ItemOutcome, WriteOp};

/// Most documents sent in one `_bulk` request.
pub const BULK_MAX_DOCS: usize = 500;
/// Soft cap on one `_bulk` body; a request is closed once it exceeds this.
const BULK_MAX_BYTES: usize = 8 * 1024 * 1024;

impl OpenSearchStore {
    /// Sends one `_bulk` body; the outcome of each action, in order.
    async fn bulk(
        &self,
        body: Vec<u8>,
        docs: &[(String, String)],
        kinds: &[BulkKind],
    ) -> Result<Vec<ItemOutcome>, StoreError> {
        let path = "/_bulk";
        let reply = self
            .call_with(Method::Post, path, &[], Some(body), true, None)
            .await?;
        let v = self.expect_ok(Method::Post, path, reply)?;
        bulk_outcomes(&v, docs, kinds)
    }

    /// Writes `ops` in `_bulk` requests of bounded size; returns each op's outcome and
    /// its (index, _id), in order.
    pub(super) async fn apply_ops(
        &self,
        ops: &[WriteOp],
    ) -> Result<(Vec<ItemOutcome>, Vec<(String, String)>), StoreError> {
        let upserts: Vec<&Record> = ops
            .iter()
            .filter_map(|op| match op {
                WriteOp::Upsert(r) => Some(r),
                WriteOp::Delete { .. } => None,
            })
            .collect();
        for r in &upserts {
            validate_vector(&r.vector, self.cfg.dimension)?;
            validate_fields(r)?;
        }
        if ops.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let index_failure = self.ensure_write_indices(&upserts).await?;
        self.send_in_batches(ops, &index_failure).await
    }

    /// Makes sure every index the upserts go to exists with the right definition, checked
    /// once per index per process: per tenant, this is where tenant indices are
    /// created on their first write. The definition is the template's, sent
    /// explicitly, so a write never lands in an index auto-created with dynamic
    /// mappings (where `vector` would become a plain float array).
    ///
    /// An index that cannot be made right (a per-tenant index with a foreign
    /// definition, say) fails the items bound for it, not the whole batch, so one bad
    /// tenant never blocks the others: the map holds the outcome of those items, by
    /// index. Unreachable or timed out fails the call.
    async fn ensure_write_indices(
        &self,
        upserts: &[&Record],
    ) -> Result<HashMap<String, ItemOutcome>, StoreError> {
        let mut index_failure: HashMap<String, ItemOutcome> = HashMap::new();
        let missing: Vec<String> = {
            let known = self.known();
            let mut missing = Vec::new();
            for r in upserts {
                let name = self.index_for_tenant(&r.id.tenant_id);
                if !known.contains(&name) && !missing.contains(&name) {
                    missing.push(name);
                }
            }
            missing
        };
        for name in missing {
            if let Err(e) = self.ensure_index(&name).await {
                let msg = format!("index {name}: {e}");
                let outcome = match e.class() {
                    ErrorClass::Connection | ErrorClass::Timeout => return Err(e),
                    ErrorClass::Rejected => ItemOutcome::Rejected(msg),
                    _ if matches!(e, StoreError::Conflict(_)) => ItemOutcome::Rejected(msg),
                    _ => ItemOutcome::Retry(msg),
                };
                index_failure.insert(name, outcome);
            }
        }
        Ok(index_failure)
    }

    /// Sends `ops` in `_bulk` requests of at most [`BULK_MAX_DOCS`] actions (and about
    /// `BULK_MAX_BYTES`), skipping the upserts bound for an index in `index_failure`
    /// (they get its failure); returns each op's outcome and its (index, _id), in order.
    async fn send_in_batches(
        &self,
        ops: &[WriteOp],
        index_failure: &HashMap<String, ItemOutcome>,
    ) -> Result<(Vec<ItemOutcome>, Vec<(String, String)>), StoreError> {
        let mut outcomes: Vec<Option<ItemOutcome>> = vec![None; ops.len()];
        let mut all_docs = Vec::with_capacity(ops.len());
        let mut body: Vec<u8> = Vec::with_capacity(64 * 1024);
        // (index, doc_id) of each action in `body`, to name a failing item, and the
        // position of that action in `ops`.
        let mut docs: Vec<(String, String)> = Vec::new();
        let mut kinds: Vec<BulkKind> = Vec::new();
        let mut slots: Vec<usize> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let index = self.index_for_tenant(&op.id().tenant_id);
            let doc_id = op.id().doc_id();
            all_docs.push((index.clone(), doc_id.clone()));
            match (op, index_failure.get(&index)) {
                (WriteOp::Upsert(_), Some(failure)) => outcomes[i] = Some(failure.clone()),
                (WriteOp::Upsert(r), None) => {
                    append_bulk_index(&mut body, &index, &doc_id, r);
                    kinds.push(BulkKind::Index);
                    docs.push((index, doc_id));
                    slots.push(i);
                }
                (WriteOp::Delete { version, .. }, _) => {
                    append_bulk_delete(&mut body, &index, &doc_id, *version);
                    kinds.push(BulkKind::Delete);
                    docs.push((index, doc_id));
                    slots.push(i);
                }
            }
            let last = i + 1 == ops.len();
            if !docs.is_empty()
                && (last || docs.len() >= BULK_MAX_DOCS || body.len() >= BULK_MAX_BYTES)
            {
                let got = self.bulk(std::mem::take(&mut body), &docs, &kinds).await?;
                for (slot, outcome) in slots.drain(..).zip(got) {
                    outcomes[slot] = Some(outcome);
                }
                docs.clear();
                kinds.clear();
            }
        }
        let outcomes = outcomes
            .into_iter()
            .map(|o| o.expect("every op was sent or failed with its index"))
            .collect();
        Ok((outcomes, all_docs))
    }
}

/// Source document as stored. Serialised directly (not through `Value`) so f32 vector
/// components are written in their shortest f32 form and parse back bit-exactly.
#[derive(Serialize)]
struct DocSource<'a> {
    tenant_id: &'a str,
    entity_type: &'a str,
    entity_id: &'a str,
    vector: &'a [f32],
    metadata: &'a Map<String, Value>,
    /// [`metadata_digest`] of `metadata`, a keyword with doc values: `validate` compares
    /// it instead of loading every `_source`.
    metadata_digest: String,
    model_version: &'a str,
    created_at: String,
    updated_at: String,
}

fn rfc3339_millis(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Appends one `index` action and its source to an NDJSON bulk body.
///
/// A record read from pgvector carries its row version, sent as an external version
/// with `external_gte`: OpenSearch keeps the document only if no newer version is
/// there, whichever process or path (adapter, outbox, sync, repair) sends it.
fn append_bulk_index(body: &mut Vec<u8>, index: &str, doc_id: &str, r: &Record) {
    let action = match r.version {
        Some(v) => json!({"index": {"_index": index, "_id": doc_id,
            "version": v, "version_type": "external_gte"}}),
        None => json!({"index": {"_index": index, "_id": doc_id}}),
    };
    serde_json::to_writer(&mut *body, &action).expect("serialising to a Vec cannot fail");
    body.push(b'\n');
    let source = DocSource {
        tenant_id: &r.id.tenant_id,
        entity_type: &r.id.entity_type,
        entity_id: &r.id.entity_id,
        vector: &r.vector,
        metadata: &r.metadata,
        metadata_digest: metadata_digest(&r.metadata),
        model_version: &r.model_version,
        created_at: rfc3339_millis(&r.created_at),
        updated_at: rfc3339_millis(&r.updated_at),
    };
    serde_json::to_writer(&mut *body, &source).expect("serialising to a Vec cannot fail");
    body.push(b'\n');
}

/// Appends one `delete` action, versioned like [`append_bulk_index`] when `version` is set.
fn append_bulk_delete(body: &mut Vec<u8>, index: &str, doc_id: &str, version: Option<i64>) {
    let action = match version {
        Some(v) => json!({"delete": {"_index": index, "_id": doc_id,
            "version": v, "version_type": "external_gte"}}),
        None => json!({"delete": {"_index": index, "_id": doc_id}}),
    };
    serde_json::to_writer(&mut *body, &action).expect("serialising to a Vec cannot fail");
    body.push(b'\n');
}

/// The action of one `_bulk` item, to read its answer right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BulkKind {
    Index,
    Delete,
}

/// Reads a `_bulk` answer item by item (`errors: true` with a 200 still means failed
/// items):
/// - 2xx, and a delete that found nothing (404), are applied;
/// - 409 `version_conflict_engine_exception` means an equal or newer version is there;
/// - 429 and 5xx are transient;
/// - any other 4xx is the item's own fault (mapping, too long a term) and is rejected.
fn bulk_outcomes(
    v: &Value,
    docs: &[(String, String)],
    kinds: &[BulkKind],
) -> Result<Vec<ItemOutcome>, StoreError> {
    let items = v
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| StoreError::bad_response(BACKEND, "_bulk: no items in the response"))?;
    if items.len() != docs.len() {
        return Err(StoreError::bad_response(
            BACKEND,
            format!(
                "_bulk: sent {} actions, got {} items",
                docs.len(),
                items.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(op) = item.as_object().and_then(|o| o.values().next()) else {
            return Err(StoreError::bad_response(
                BACKEND,
                format!("_bulk: item {i} is not an object"),
            ));
        };
        let status = op.get("status").and_then(Value::as_u64).unwrap_or(0);
        let ty = op
            .pointer("/error/type")
            .and_then(Value::as_str)
            .unwrap_or("");
        let reason = op
            .pointer("/error/reason")
            .and_then(Value::as_str)
            .unwrap_or("");
        let delete = kinds.get(i) == Some(&BulkKind::Delete);
        out.push(match status {
            200..=299 => ItemOutcome::Applied,
            404 if delete => ItemOutcome::Applied,
            409 if ty == "version_conflict_engine_exception" => ItemOutcome::Superseded {
                current: current_version(reason),
            },
            _ => {
                let (index, doc_id) = &docs[i];
                let msg = truncate(
                    &format!("index {index}, _id {doc_id}: status {status}: {ty}: {reason}"),
                    SNIPPET_CHARS + 200,
                );
                if status == 429 || status >= 500 || status == 0 {
                    ItemOutcome::Retry(msg)
                } else {
                    ItemOutcome::Rejected(msg)
                }
            }
        });
    }
    Ok(out)
}

/// The version a conflict names: "... current version [9] is higher or equal to ...".
fn current_version(reason: &str) -> Option<i64> {
    let rest = &reason[reason.find("current version [")? + "current version [".len()..];
    rest[..rest.find(']')?].parse().ok()
}

/// `Ok` when every item is applied or superseded, else an error naming the first failure.
pub(super) fn first_failure(
    outcomes: &[ItemOutcome],
    docs: &[(String, String)],
) -> Result<(), StoreError> {
    let failed: Vec<(usize, &String)> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            ItemOutcome::Rejected(m) | ItemOutcome::Retry(m) => Some((i, m)),
            _ => None,
        })
        .collect();
    let Some((i, msg)) = failed.first() else {
        return Ok(());
    };
    let text = format!(
        "_bulk: {} of {} items failed; first: item {i} ({msg})",
        failed.len(),
        docs.len()
    );
    Err(match outcomes[*i] {
        ItemOutcome::Rejected(_) => StoreError::InvalidInput(format!("opensearch {text}")),
        _ => StoreError::backend(BACKEND, text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordId;
    use crate::store::opensearch::query::parse_source;

    #[test]
    fn bulk_body_is_ndjson_with_index_actions() {
        let mut r = Record::new(RecordId::new("t", "doc", "1"), vec![0.1, -2.5, 3e-7], "m1");
        r.metadata.insert("lang".into(), json!("en"));
        let mut body = Vec::new();
        append_bulk_index(&mut body, "ml_embeddings", &r.id.doc_id(), &r);
        let text = String::from_utf8(body).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let action: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(action["index"]["_index"], "ml_embeddings");
        assert_eq!(action["index"]["_id"], r.id.doc_id());
        let source: Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(source["metadata"]["lang"], "en");
        assert!(source["created_at"].as_str().unwrap().ends_with('Z'));
        let back = parse_source(&source).unwrap();
        assert_eq!(back, r);
        assert!(lines[1].contains("[0.1,-2.5,3e-7]"), "{}", lines[1]);
    }

    #[test]
    fn f32_vectors_round_trip_bit_exactly_through_json() {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        let mut xs: Vec<f32> = (0..200_000)
            .map(|_| f32::from_bits(rng.r#gen::<u32>()))
            .filter(|x| x.is_finite())
            .collect();
        xs.extend((0..200_000).map(|_| rng.gen_range(-1.0f32..1.0)));
        xs.extend([f32::MIN_POSITIVE, f32::MAX, f32::MIN, 1e-45, -0.0, 0.0]);
        let text = serde_json::to_vec(&xs).unwrap();
        let back: Vec<f32> = serde_json::from_slice(&text).unwrap();
        for (a, b) in xs.iter().zip(&back) {
            assert_eq!(a.to_bits(), b.to_bits(), "{a:e} came back as {b:e}");
        }
    }

    #[test]
    fn bulk_item_errors_are_reported() {
        let docs = vec![
            ("i".to_string(), "a".to_string()),
            ("i".to_string(), "b".to_string()),
        ];
        let kinds = [BulkKind::Index, BulkKind::Index];
        let ok = json!({"errors": false, "items": [
            {"index": {"status": 201}}, {"index": {"status": 200}}
        ]});
        let o = bulk_outcomes(&ok, &docs, &kinds).unwrap();
        assert!(first_failure(&o, &docs).is_ok());
        let bad = json!({"errors": true, "items": [
            {"index": {"status": 201}},
            {"index": {"status": 400, "error": {"type": "mapper_parsing_exception",
                "reason": "failed to parse field [vector]"}}}
        ]});
        let o = bulk_outcomes(&bad, &docs, &kinds).unwrap();
        assert!(matches!(o[1], ItemOutcome::Rejected(_)));
        let e = first_failure(&o, &docs).unwrap_err();
        assert_eq!(e.class(), crate::error::ErrorClass::Rejected);
        let e = e.to_string();
        assert!(e.contains("1 of 2 items failed"), "{e}");
        assert!(e.contains("_id b"), "{e}");
        assert!(e.contains("status 400: mapper_parsing_exception"), "{e}");
    }

    #[test]
    fn bulk_items_are_classified_one_by_one() {
        let docs: Vec<(String, String)> =
            (0..5).map(|i| ("i".to_string(), i.to_string())).collect();
        let kinds = [
            BulkKind::Index,
            BulkKind::Delete,
            BulkKind::Index,
            BulkKind::Index,
            BulkKind::Delete,
        ];
        let v = json!({"errors": true, "items": [
            {"index": {"status": 409, "error": {"type": "version_conflict_engine_exception",
                "reason": "current version [9] is higher or equal to the one provided [3]"}}},
            {"delete": {"status": 404, "result": "not_found"}},
            {"index": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}},
            {"index": {"status": 400, "error": {"type": "illegal_argument_exception",
                "reason": "Document contains at least one immense term"}}},
            {"delete": {"status": 200, "result": "deleted"}}
        ]});
        let o = bulk_outcomes(&v, &docs, &kinds).unwrap();
        assert_eq!(o[0], ItemOutcome::Superseded { current: Some(9) });
        assert_eq!(o[1], ItemOutcome::Applied);
        assert!(matches!(o[2], ItemOutcome::Retry(_)));
        assert!(matches!(&o[3], ItemOutcome::Rejected(m) if m.contains("immense term")));
        assert_eq!(o[4], ItemOutcome::Applied);
        // A retryable failure makes the batch a backend error, not the caller's fault.
        let e = first_failure(&o, &docs).unwrap_err();
        assert_eq!(e.class(), crate::error::ErrorClass::Backend);
    }

    #[test]
    fn versioned_actions_use_external_gte() {
        let mut r = Record::new(RecordId::new("t", "e", "1"), vec![0.5], "m");
        r.version = Some(42);
        let mut body = Vec::new();
        append_bulk_index(&mut body, "x", "d", &r);
        append_bulk_delete(&mut body, "x", "d", Some(43));
        let lines: Vec<Value> = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines[0]["index"]["version"], 42);
        assert_eq!(lines[0]["index"]["version_type"], "external_gte");
        assert_eq!(lines[2]["delete"]["version"], 43);
        assert_eq!(lines[2]["delete"]["version_type"], "external_gte");
        assert_eq!(lines.len(), 3, "a delete has no source line");
    }
}
