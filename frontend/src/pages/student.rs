//! `/students/{id}`: a student's grades, a chart of them, and the form that
//! adds one — with the WebAssembly client in place (no reload, inline
//! errors) or as a plain form post answered with a redirect.

use gradebook_shared::grading::{Grade, GradeType, Student};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};
use serde::{Deserialize, Serialize};

use super::{Problem, percent, score};
use crate::api::{Api, add_grade};
use crate::error::ApiError;
use crate::ids::student_id;

#[component]
pub fn StudentPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let id = move || params.read().get("id").and_then(|s| student_id(&s));
    let api = Api::current();
    // A student's own page shows no add-grade form (they may not add one);
    // the browser builds, which cannot tell, show it and let the server decide.
    let viewer = crate::people::Viewer::current();
    let can_add = viewer.as_ref().is_none_or(crate::people::Viewer::may_add_grades);
    let csrf = match &viewer {
        Some(crate::people::Viewer::Person { csrf, .. }) => csrf.clone(),
        _ => String::new(),
    };
    let student = Resource::new(id, move |id| {
        let api = api.clone();
        async move {
            match id {
                Some(id) => api.student(id).await,
                None => Err(ApiError::new(404, "There is no such student.")),
            }
        }
    });
    // A grade the service refused after a plain form post comes back in the
    // query, so the form shows it again with the message.
    // The query is anyone's to write: control characters (a NUL is not
    // even allowed in HTML) are dropped before it is shown.
    let refused = move || {
        let q = query.read_untracked();
        let shown = |key: &str| q.get(key).map(|v| v.chars().filter(|c| !c.is_control()).collect::<String>());
        FormState {
            title: shown("title").unwrap_or_default(),
            kind: shown("type").unwrap_or_else(|| "Quiz".to_owned()),
            score: shown("score").unwrap_or_default(),
            error: shown("error"),
        }
    };

    // Which page of grades to show; the latest when none is asked for.
    let page = move || query.read_untracked().get("page").and_then(|p| p.parse::<usize>().ok());

    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || {
                let csrf = csrf.clone();
                Suspend::new(async move {
                    match student.await {
                        Err(error) => view! { <Title text="Grade Book"/><Problem error/> }.into_any(),
                        Ok(student) => {
                            let (student, shown) = one_page(student, page());
                            view! {
                                <Title text=format!("{} {} · Grade Book", student.first_name, student.last_name)/>
                                <p class="back"><a href="/students">"← All students"</a></p>
                                <h1>{student.first_name.clone()}" "{student.last_name.clone()}</h1>
                                <GradeBook student shown form=refused() can_add csrf/>
                            }.into_any()
                        }
                    }
                })
            }}
        </Transition>
    }
}

/// Grades shown on one page: a student can have tens of thousands, and the
/// page (its table, its chart, the island's data) grows with each one.
const GRADES_PER_PAGE: usize = 100;

/// Where the grades shown sit among all of the student's grades.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Shown {
    /// 1-based, of `pages`.
    pub page: usize,
    pub pages: usize,
    /// Index of the first grade shown.
    pub first: usize,
    pub total: usize,
}

/// `student` with only the grades of `page` (1-based, in the order they were
/// entered; the last page when `None`, so a new grade is in view), and its
/// average still over every grade.
fn one_page(mut student: Student, page: Option<usize>) -> (Student, Shown) {
    let total = student.grades.len();
    let pages = total.div_ceil(GRADES_PER_PAGE).max(1);
    let page = page.unwrap_or(pages).clamp(1, pages);
    let first = (page - 1) * GRADES_PER_PAGE;
    student.average = student.mean();
    student.grades = student.grades.drain(first..(first + GRADES_PER_PAGE).min(total)).collect();
    (student, Shown { page, pages, first, total })
}

/// What the add-grade form holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FormState {
    pub title: String,
    pub kind: String,
    pub score: String,
    pub error: Option<String>,
}

/// The interactive part of the page (the only part shipped to the browser
/// as an island): the average, grades and chart, and the form that adds a
/// grade without a reload — or, without JavaScript, posts natively.
#[cfg_attr(feature = "csr", component)]
#[cfg_attr(not(feature = "csr"), leptos::island)]
fn GradeBook(student: Student, shown: Shown, form: FormState, can_add: bool, csrf: String) -> impl IntoView {
    let id = student.id;
    let student = RwSignal::new(student);
    let shown = RwSignal::new(shown);
    let title = RwSignal::new(form.title);
    let kind = RwSignal::new(form.kind);
    let points = RwSignal::new(form.score);
    let error = RwSignal::new(form.error);
    let pending = RwSignal::new(false);

    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        pending.set(true);
        spawn_local(async move {
            match add_grade(id, &title.get_untracked(), &kind.get_untracked(), &points.get_untracked()).await {
                Ok(_) => {
                    title.set(String::new());
                    points.set(String::new());
                    error.set(None);
                    match Api::current().student(id).await {
                        // The new grade is on the last page.
                        Ok(now) => {
                            let (now, now_shown) = one_page(now, None);
                            student.set(now);
                            shown.set(now_shown);
                        }
                        Err(e) => error.set(Some(e.error)),
                    }
                }
                Err(e) => error.set(Some(e.error)),
            }
            pending.set(false);
        });
    };

    view! {
        <p class="average">"Average: "<strong>{move || percent(student.read().mean())}</strong></p>
        {move || {
            let grades = student.read().grades.clone();
            view! { <Grades grades=grades.clone()/><Chart grades/><Pager id shown=shown.get()/> }
        }}
        {can_add.then(|| view! {
            <form class="add-grade" method="post" action=format!("/students/{id}/grades") novalidate=true on:submit=on_submit>
                <h2>"Add a grade"</h2>
                // Lets the form post through when the browser does not say it is
                // same-origin (see `auth::checked_csrf`).
                <input type="hidden" name="csrf" value=csrf.clone()/>
                <label>
                    "Title"
                    <input
                        name="Title"
                        type="text"
                        prop:value=move || title.get()
                        on:input:target=move |ev| title.set(ev.target().value())
                    />
                </label>
                <label>
                    "Type"
                    <select name="Type" on:change:target=move |ev| kind.set(ev.target().value())>
                        {GradeType::ALL.iter().map(|t| {
                            let t = t.as_str();
                            view! { <option value=t selected=move || kind.get() == t>{t}</option> }
                        }).collect_view()}
                    </select>
                </label>
                <label>
                    "Score (0–100)"
                    <input
                        name="Score"
                        type="number"
                        step="any"
                        prop:value=move || points.get()
                        on:input:target=move |ev| points.set(ev.target().value())
                    />
                </label>
                <button type="submit" disabled=move || pending.get()>"Add grade"</button>
                {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            </form>
        })}
    }
}

#[component]
fn Grades(grades: Vec<Grade>) -> impl IntoView {
    if grades.is_empty() {
        return view! { <p class="empty">"No grades available"</p> }.into_any();
    }
    view! {
        <table class="grades">
            <thead>
                <tr><th>"Title"</th><th>"Type"</th><th class="num">"Score"</th></tr>
            </thead>
            <tbody>
                {grades.into_iter().map(|g| view! {
                    <tr>
                        <td>{g.title}</td>
                        <td>{g.kind.clone()}</td>
                        <td class="num">{score(g.score)}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

/// Which grades these are, with links to the pages before and after; nothing
/// when they all fit on one.
#[component]
fn Pager(id: i64, shown: Shown) -> impl IntoView {
    if shown.pages <= 1 {
        return ().into_any();
    }
    let link = move |page: usize| format!("/students/{id}?page={page}");
    let last = (shown.first + GRADES_PER_PAGE).min(shown.total);
    view! {
        <nav class="pager" aria-label="Pages of grades">
            {(shown.page > 1).then(|| view! { <a href=link(shown.page - 1) rel="prev">"← Earlier"</a> })}
            <span>{format!("Grades {}–{} of {}", shown.first + 1, last, shown.total)}</span>
            {(shown.page < shown.pages).then(|| view! { <a href=link(shown.page + 1) rel="next">"Later →"</a> })}
        </nav>
    }
    .into_any()
}

/// The scores as bars, in the order they were entered.
#[component]
fn Chart(grades: Vec<Grade>) -> impl IntoView {
    const BAR: usize = 28;
    const GAP: usize = 8;
    const HEIGHT: f64 = 100.0;
    if grades.is_empty() {
        return ().into_any();
    }
    let width = grades.len() * (BAR + GAP) + GAP;
    view! {
        <svg class="chart" viewBox=format!("0 0 {width} 120") width=width height="120" role="img" aria-label="Scores">
            <line x1="0" y1="110" x2=width y2="110" class="axis"/>
            {grades.into_iter().enumerate().map(|(i, g)| {
                let h = g.score.clamp(0.0, 100.0) / 100.0 * HEIGHT;
                view! {
                    <rect x=GAP + i * (BAR + GAP) y=110.0 - h width=BAR height=h class=g.kind.to_lowercase()>
                        <title>{format!("{}: {}", g.title, score(g.score))}</title>
                    </rect>
                }
            }).collect_view()}
        </svg>
    }
    .into_any()
}
