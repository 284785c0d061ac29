//! Signing in with a named API token: the agent says who the token is and what it may do; the
//! token stays in this page's memory only (a reload signs out).

use leptos::prelude::*;

use crate::Ctx;
use crate::api;
use crate::components::ErrorView;

#[component]
pub fn SignIn() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let token = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let presented = token.get_untracked().trim().to_string();
        if presented.is_empty() {
            error.set(Some(
                "enter an API token (`duet token new NAME` makes one)".into(),
            ));
            return;
        }
        leptos::task::spawn_local(async move {
            match api::session(&presented).await {
                Ok(session) => {
                    error.set(None);
                    token.set(String::new());
                    ctx.session.set(Some((presented, session)));
                }
                Err(e) => error.set(Some(format!("sign-in refused: {e}"))),
            }
        });
    };
    view! {
        <div class="session">
            {move || match ctx.session.get() {
                Some((_, session)) => view! {
                    <span id="signed-in">"Signed in as " <strong>{session.name}</strong></span>
                    <button id="sign-out" on:click=move |_| ctx.session.set(None)>"Sign out"</button>
                }
                .into_any(),
                None => view! {
                    <form id="sign-in" on:submit=submit>
                        <label for="token">"API token"</label>
                        <input
                            id="token"
                            type="password"
                            autocomplete="off"
                            prop:value=move || token.get()
                            on:input=move |ev| token.set(event_target_value(&ev))
                        />
                        <button type="submit">"Sign in"</button>
                    </form>
                }
                .into_any(),
            }}
            {move || error.get().map(|message| view! { <ErrorView message /> })}
        </div>
    }
}
