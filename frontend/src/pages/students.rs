//! `/students`: the grade book.

use leptos::prelude::*;
use leptos_meta::Title;

use super::{Problem, percent};
use crate::api::Api;

#[component]
pub fn StudentsPage() -> impl IntoView {
    let api = Api::current();
    let students = Resource::new(
        || (),
        move |()| {
            let api = api.clone();
            async move { api.students().await }
        },
    );
    view! {
        <Title text="Grade Book"/>
        <h1>"Grade Book"</h1>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match students.await {
                    Err(error) => view! { <Problem error/> }.into_any(),
                    Ok(list) if list.is_empty() => {
                        view! { <p class="empty">"No students yet."</p> }.into_any()
                    }
                    Ok(list) => view! {
                        <table class="students">
                            <thead>
                                <tr><th>"Last name"</th><th>"First name"</th><th class="num">"Average"</th></tr>
                            </thead>
                            <tbody>
                                {list.into_iter().map(|s| {
                                    let href = format!("/students/{}", s.id);
                                    let average = percent(s.mean());
                                    view! {
                                        <tr>
                                            <td><a href=href.clone()>{s.last_name}</a></td>
                                            <td><a href=href>{s.first_name}</a></td>
                                            <td class="num">{average}</td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}
