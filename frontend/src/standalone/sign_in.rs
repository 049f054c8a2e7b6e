//! The sign-in form: a plain form post to `/signin`, no JavaScript needed,
//! showing why the last attempt was refused.

use leptos::prelude::*;

use super::document::{Document, Nav, render};

/// What the form shows.
#[derive(Clone, Debug, Default)]
pub struct SignInForm {
    /// Where to go once signed in.
    pub next: String,
    /// The name typed last time.
    pub name: String,
    /// The form's CSRF token.
    pub csrf: String,
    /// Why the last attempt was refused.
    pub problem: Option<String>,
}

#[component]
fn SignInPage(options: LeptosOptions, form: SignInForm) -> impl IntoView {
    let SignInForm { next, name, csrf, problem } = form;
    let problem = problem.map(|p| view! { <p class="error" role="alert">{p}</p> });
    view! {
        <Document options title="Sign in".to_owned() nav=Nav::Nothing>
            <section class="signin">
                <h1>"Sign in"</h1>
                {problem}
                <form method="post" action="/signin">
                    <label>
                        "Name "
                        <input name="name" type="text" autocomplete="username" required autofocus value=name/>
                    </label>
                    <label>
                        "Password "
                        <input name="password" type="password" autocomplete="current-password" required/>
                    </label>
                    <input type="hidden" name="next" value=next/>
                    <input type="hidden" name="csrf" value=csrf/>
                    <button type="submit">"Sign in"</button>
                </form>
            </section>
        </Document>
    }
}

/// The whole page, as HTML.
pub fn sign_in_page(options: &LeptosOptions, form: SignInForm) -> String {
    let options = options.clone();
    render(move || view! { <SignInPage options form/> }.into_any())
}
