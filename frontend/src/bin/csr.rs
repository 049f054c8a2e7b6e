//! The client-only build `trunk serve` makes: the whole app rendered in the
//! browser, talking to the portal server's `/api` (which trunk proxies).

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(gradebook_frontend::app::App);
}
