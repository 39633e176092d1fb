//! Progress bars (count, rate, ETA) on stderr; hidden when stderr is not a terminal
//! unless forced, so CI logs stay readable.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub fn bar(total: u64, what: &str, visible: bool) -> ProgressBar {
    let pb = ProgressBar::new(total);
    if !visible {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta}",
        )
        .expect("static template is valid"),
    );
    pb.set_message(what.to_string());
    pb
}
