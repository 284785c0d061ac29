//! Mounts the duet web UI.

fn main() {
    leptos::mount::mount_to_body(duet_web::App);
}
