//! Reading whole key ranges of the index: ordered pages (`search_after` on the three
//! identity fields) and, for `validate`, unordered scroll reads of every document in a
//! range, which cost the server one pass instead of a sort per page: from doc values
//! and a server-side vector digest when the documents carry a metadata digest, from
//! `_source` otherwise.

use opensearch::http::Method;

use super::index::METADATA_DIGEST;
use super::query::{
    MAX_PAGE, digest_scroll_body, parse_digest_page, parse_scan_hits, parse_scroll_page,
    range_query, scan_body,
};
use super::transport::{Reply, http_error, to_vec};
use super::{BACKEND, OpenSearchStore};
use crate::error::StoreError;
use crate::record::{Record, RecordId};
use crate::store::{DigestRead, KeyRange};

/// How long the server keeps a scroll between two pages.
const SCROLL_KEEP_ALIVE: &str = "2m";

impl OpenSearchStore {
    /// Up to `limit` records with `after < id <= until`, in key order.
    pub(super) async fn ordered_range(
        &self,
        after: Option<&RecordId>,
        until: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let pattern = self.search_pattern();
        let path = format!("/{pattern}/_search");
        let mut out: Vec<Record> = Vec::with_capacity(limit.min(MAX_PAGE));
        let mut cursor = after.cloned();
        // One search returns at most `max_result_window` documents; loop so that a short
        // page still means "no more records", as `store::scan` assumes.
        while out.len() < limit {
            let size = (limit - out.len()).min(MAX_PAGE);
            let body = scan_body(cursor.as_ref(), until, size);
            let reply = self.search_raw(&pattern, &to_vec(&body)).await?;
            if !reply.is_success() {
                return Err(http_error(Method::Post, &path, &reply));
            }
            let page = parse_scan_hits(&reply.body)?;
            let n = page.len();
            out.extend(page);
            cursor = out.last().map(|r| r.id.clone());
            if n < size {
                break;
            }
        }
        Ok(out)
    }

    /// The content hash of every document in `range`, in index order. Read from doc
    /// values and a server-side vector digest when every index of the pattern maps the
    /// metadata digest and every document in the range has one; otherwise (an index
    /// from before the field, a document written by another tool, inline scripts
    /// disabled) from each document's `_source`, which gives the same hashes slower.
    /// [`DigestRead::FullRecord`] always reads `_source`.
    pub(super) async fn scroll_digests(
        &self,
        range: &KeyRange,
        page: usize,
        read: DigestRead,
    ) -> Result<Vec<(RecordId, [u8; 32])>, StoreError> {
        if read == DigestRead::Cheapest && self.digest_field_mapped().await? {
            if let Some(out) = self.scroll_doc_value_digests(range, page).await? {
                return Ok(out);
            }
        }
        self.scroll_source_digests(range, page).await
    }

    /// True when every index of the search pattern maps [`METADATA_DIGEST`] as a keyword
    /// (false when no index matches: the `_source` path answers that as well).
    async fn digest_field_mapped(&self) -> Result<bool, StoreError> {
        let path = format!(
            "/{}/_mapping/field/{METADATA_DIGEST}",
            self.search_pattern()
        );
        let reply = self.call(Method::Get, &path, &[], None).await?;
        if reply.status == 404 {
            return Ok(false);
        }
        let v = self.expect_ok(Method::Get, &path, reply)?;
        let Some(indices) = v.as_object() else {
            return Ok(false);
        };
        let keyword = |def: &serde_json::Value| {
            let field = format!("/mappings/{METADATA_DIGEST}/mapping/{METADATA_DIGEST}/type");
            def.pointer(&field).and_then(|t| t.as_str()) == Some("keyword")
        };
        Ok(!indices.is_empty() && indices.values().all(keyword))
    }

    /// The digest scroll ([`digest_scroll_body`]); `None` when the range has a document
    /// without a metadata digest or the cluster refuses the script.
    async fn scroll_doc_value_digests(
        &self,
        range: &KeyRange,
        page: usize,
    ) -> Result<Option<Vec<(RecordId, [u8; 32])>>, StoreError> {
        let pattern = self.search_pattern();
        let path = format!("/{pattern}/_search");
        let query = range_query(range.after.as_ref(), range.until.as_ref());
        let body = digest_scroll_body(query, page.clamp(1, MAX_PAGE));
        let reply = self
            .call(
                Method::Post,
                &path,
                &[("scroll", SCROLL_KEEP_ALIVE)],
                Some(to_vec(&body)),
            )
            .await?;
        if reply.status == 400 {
            let err = http_error(Method::Post, &path, &reply);
            tracing::warn!(
                "the doc-value digest scan was refused ({err}); reading every document's \
                 _source instead, which is slower"
            );
            return Ok(None);
        }
        let mut out = Vec::new();
        let mut complete = true;
        self.scroll_pages(&path, reply, |body| {
            let (id, n, digests) = parse_digest_page(body)?;
            match digests {
                Some(d) => out.extend(d),
                None => complete = false,
            }
            // Stop at the first document without a digest: the range is read again.
            Ok((id, if complete { n } else { 0 }))
        })
        .await?;
        if !complete {
            tracing::warn!(
                "documents in {pattern} have no {METADATA_DIGEST} (written before it existed, \
                 or by another tool): reading this key range's _source instead, which is \
                 slower; a `sync` rewrites them with it"
            );
            return Ok(None);
        }
        Ok(Some(out))
    }

    /// The content hash of every document in `range` from its `_source`, through one
    /// scroll (`_doc` order, `page` documents a call).
    async fn scroll_source_digests(
        &self,
        range: &KeyRange,
        page: usize,
    ) -> Result<Vec<(RecordId, [u8; 32])>, StoreError> {
        let pattern = self.search_pattern();
        let path = format!("/{pattern}/_search");
        let body = serde_json::json!({
            "size": page.clamp(1, MAX_PAGE),
            "sort": ["_doc"],
            "query": range_query(range.after.as_ref(), range.until.as_ref()),
        });
        let query = [("scroll", SCROLL_KEEP_ALIVE)];
        let reply = (self.call(Method::Post, &path, &query, Some(to_vec(&body)))).await?;
        let mut out = Vec::new();
        self.scroll_pages(&path, reply, |body| {
            let (id, records) = parse_scroll_page(body)?;
            out.extend(records.iter().map(|r| (r.id.clone(), r.content_hash())));
            Ok((id, records.len()))
        })
        .await?;
        Ok(out)
    }

    /// Follows a scroll from its first `reply` to an empty page (or until `on_page`,
    /// given each page's body, answers 0 hits), then clears it. `on_page` returns the
    /// page's scroll id and its number of hits.
    async fn scroll_pages(
        &self,
        path: &str,
        mut reply: Reply,
        mut on_page: impl FnMut(&[u8]) -> Result<(Option<String>, usize), StoreError>,
    ) -> Result<(), StoreError> {
        let mut scroll_id: Option<String> = None;
        let result = loop {
            if !reply.is_success() {
                break Err(http_error(Method::Post, path, &reply));
            }
            let (id, hits) = match on_page(&reply.body) {
                Ok(p) => p,
                Err(e) => break Err(e),
            };
            scroll_id = id.or(scroll_id);
            if hits == 0 {
                break Ok(());
            }
            let Some(id) = &scroll_id else {
                break Err(StoreError::bad_response(
                    BACKEND,
                    "scroll page: no _scroll_id",
                ));
            };
            let next = serde_json::json!({"scroll": SCROLL_KEEP_ALIVE, "scroll_id": id});
            reply = match self
                .call(Method::Post, "/_search/scroll", &[], Some(to_vec(&next)))
                .await
            {
                Ok(r) => r,
                Err(e) => break Err(e),
            };
        };
        if let Some(id) = scroll_id {
            // Best effort: an unreleased scroll expires after its keep-alive anyway.
            let clear = serde_json::json!({"scroll_id": [id]});
            let _ = (self.call(Method::Delete, "/_search/scroll", &[], Some(to_vec(&clear)))).await;
        }
        result
    }
}
