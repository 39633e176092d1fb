//! Reading whole key ranges of the index: ordered pages (`search_after` on the three
//! identity fields) and, for `validate`, unordered scroll reads of every document in a
//! range, which cost the server one pass instead of a sort per page.

use opensearch::http::Method;

use super::query::{MAX_PAGE, parse_scan_hits, parse_scroll_page, range_query, scan_body};
use super::transport::{http_error, to_vec};
use super::{BACKEND, OpenSearchStore};
use crate::error::StoreError;
use crate::record::{Record, RecordId};
use crate::store::KeyRange;

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

    /// The content hash of every document in `range`, in index order, through one
    /// scroll (`_doc` order, `page` documents a call), cleared at the end.
    pub(super) async fn scroll_digests(
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
        let mut reply = (self.call(Method::Post, &path, &query, Some(to_vec(&body)))).await?;
        let mut out = Vec::new();
        let mut scroll_id: Option<String> = None;
        let result = loop {
            if !reply.is_success() {
                break Err(http_error(Method::Post, &path, &reply));
            }
            let (id, records) = match parse_scroll_page(&reply.body) {
                Ok(p) => p,
                Err(e) => break Err(e),
            };
            scroll_id = id.or(scroll_id);
            if records.is_empty() {
                break Ok(());
            }
            out.extend(records.iter().map(|r| (r.id.clone(), r.content_hash())));
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
        result.map(|()| out)
    }
}
