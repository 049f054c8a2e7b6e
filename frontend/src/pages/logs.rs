//! `/logs`: the central log, filterable by service and level, with new
//! entries streaming in live (Server-Sent Events through the portal), and
//! Older and Newer links by cursor, plain links that work without
//! JavaScript.

use gradebook_shared::log::{Level, LogRecord};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::Problem;
use crate::api::{Api, LogFilter};

/// Live entries kept on the page.
#[cfg_attr(not(feature = "client"), allow(dead_code))]
const LIVE_MAX: usize = 500;

#[component]
pub fn LogsPage() -> impl IntoView {
    let query = use_query_map();
    let filter = Memo::new(move |_| {
        let q = query.read();
        LogFilter {
            service: q.get("service").filter(|s| !s.is_empty()),
            level: q.get("level").filter(|s| !s.is_empty()),
            after: q.get("after").and_then(|s| s.parse().ok()),
            before: q.get("before").and_then(|s| s.parse().ok()),
        }
    });
    let api = Api::current();
    let recent = Resource::new(
        move || filter.get(),
        move |f| {
            let api = api.clone();
            async move { api.logs(f).await }
        },
    );

    view! {
        <Title text="Logs · Grade Book"/>
        <h1>"Logs"</h1>
        <form class="filters" method="get" action="/logs">
            <label>"Service "
                <input name="service" type="text" placeholder="all" prop:value=move || filter.get().service.unwrap_or_default()/>
            </label>
            <label>"Level "
                <select name="level">
                    <option value="" selected=move || filter.get().level.is_none()>"all"</option>
                    {Level::ALL.iter().map(|l| {
                        let l = l.as_str();
                        view! { <option value=l selected=move || filter.get().level.as_deref() == Some(l)>{l}" and up"</option> }
                    }).collect_view()}
                </select>
            </label>
            <button type="submit">"Filter"</button>
        </form>
        // Each service stamps its records with its own clock, so times can
        // disagree with the order the log keeps; say which order this is.
        <p class="note">
            "Newest first, in the order the log service received them; each time is the sending service's clock."
        </p>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match recent.await {
                    Err(error) => view! { <Problem error/> }.into_any(),
                    Ok(records) => {
                        let filter = filter.get_untracked();
                        view! {
                            <Paging
                                filter=filter.clone()
                                first=records.first().map(|r| r.seq)
                                last=records.last().map(|r| r.seq)
                            />
                            <LogTable filter records/>
                        }.into_any()
                    }
                }
            })}
        </Transition>
    }
}

/// Older and Newer links around the page shown: by cursor, so paging
/// never skips an entry. Newer shows only off the newest page.
#[component]
fn Paging(filter: LogFilter, first: Option<u64>, last: Option<u64>) -> impl IntoView {
    let filters = filter.filters();
    let link = |cursor: String| {
        let query = [filters.as_str(), cursor.as_str()].into_iter().filter(|p| !p.is_empty()).collect::<Vec<_>>();
        if query.is_empty() { "/logs".to_owned() } else { format!("/logs?{}", query.join("&")) }
    };
    let paged = filter.after.is_some() || filter.before.is_some();
    let older = first.map(|seq| link(format!("before={seq}")));
    let newer = last.filter(|_| paged).map(|seq| link(format!("after={seq}")));
    let newest = paged.then(|| link(String::new()));
    view! {
        <nav class="paging">
            {older.map(|href| view! { <a rel="prev" href=href>"Older"</a>" " })}
            {newer.map(|href| view! { <a rel="next" href=href>"Newer"</a>" " })}
            {newest.map(|href| view! { <a href=href>"Newest"</a> })}
        </nav>
    }
}

/// The entries, newest first, with new ones streaming in (an island) when
/// the page shown is the newest.
#[cfg_attr(feature = "csr", component)]
#[cfg_attr(not(feature = "csr"), leptos::island)]
fn LogTable(filter: LogFilter, records: Vec<LogRecord>) -> impl IntoView {
    let live = RwSignal::new(Vec::<LogRecord>::new());
    #[cfg(feature = "client")]
    if filter.after.is_none()
        && filter.before.is_none()
        && let Some(source) = stream(&format!("/api/logs/stream?{}", filter.query()), live)
    {
        let source = send_wrapper::SendWrapper::new(source);
        on_cleanup(move || source.close());
    }
    #[cfg(not(feature = "client"))]
    let _ = filter;
    view! {
        <table class="logs">
            <thead>
                <tr><th>"Time"</th><th>"Service"</th><th>"Level"</th><th>"Message"</th><th>"Fields"</th></tr>
            </thead>
            <tbody>
                {move || {
                    let mut all = records.clone();
                    let last = all.last().map_or(0, |r| r.seq);
                    all.extend(live.get().into_iter().filter(|r| r.seq > last));
                    all.reverse();
                    all.into_iter().map(row).collect_view()
                }}
            </tbody>
        </table>
    }
}

fn row(r: LogRecord) -> impl IntoView {
    let time = r.timestamp.get(11..23).unwrap_or(&r.timestamp).to_owned();
    // What a message is about ("registered": which service, at which URL)
    // is often only in its fields.
    let fields = r.fields.unwrap_or_default().into_iter().map(|(key, value)| {
        let value = match value {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        view! { <code>{format!("{key}={value}")}</code>" " }
    });
    view! {
        <tr class=format!("level-{}", r.level)>
            <td><time datetime=r.timestamp.clone()>{time}</time></td>
            <td>{r.service}</td>
            <td>{r.level.as_str()}</td>
            <td class="message">{r.message}</td>
            <td class="fields">{fields.collect_view()}</td>
        </tr>
    }
}

/// Opens the live tail, appending what arrives to `live`.
#[cfg(feature = "client")]
fn stream(url: &str, live: RwSignal<Vec<LogRecord>>) -> Option<web_sys::EventSource> {
    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;
    let source = web_sys::EventSource::new(url).ok()?;
    let on_log = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |ev: web_sys::MessageEvent| {
        let Some(text) = ev.data().as_string() else { return };
        if let Ok(record) = serde_json::from_str::<LogRecord>(&text) {
            live.update(|v| {
                v.push(record);
                if v.len() > LIVE_MAX {
                    v.remove(0);
                }
            });
        }
    });
    source.add_event_listener_with_callback("log", on_log.as_ref().unchecked_ref()).ok()?;
    // The listener lives as long as the EventSource, which is closed on cleanup.
    on_log.forget();
    Some(source)
}
