//! `/services`: every registration the registry knows, refreshed every
//! second — the system's status monitor.

use gradebook_shared::registry::{HealthState, ServiceStatus};
use leptos::prelude::*;
use leptos_meta::Title;

use super::Problem;
use crate::api::Api;

#[component]
pub fn ServicesPage() -> impl IntoView {
    let api = Api::current();
    let services = Resource::new(
        || (),
        move |()| {
            let api = api.clone();
            async move { api.services().await }
        },
    );
    view! {
        <Title text="Services · Grade Book"/>
        <h1>"Services"</h1>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match services.await {
                    Err(error) => view! { <Problem error/> }.into_any(),
                    Ok(initial) => view! { <ServiceTable initial/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// The table, refreshed every second in the browser (an island).
#[cfg_attr(feature = "csr", component)]
#[cfg_attr(not(feature = "csr"), leptos::island)]
fn ServiceTable(initial: Vec<ServiceStatus>) -> impl IntoView {
    let list = RwSignal::new(initial);
    let problem = RwSignal::new(None::<String>);
    #[cfg(feature = "client")]
    {
        let refresh = move || {
            leptos::task::spawn_local(async move {
                match Api::current().services().await {
                    Ok(now) => {
                        list.set(now);
                        problem.set(None);
                    }
                    Err(e) => problem.set(Some(e.error)),
                }
            })
        };
        let handle = set_interval_with_handle(refresh, std::time::Duration::from_secs(1)).ok();
        on_cleanup(move || {
            if let Some(h) = handle {
                h.clear();
            }
        });
    }
    view! {
        {move || problem.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        {move || {
            let list = list.get();
            if list.is_empty() {
                return view! { <p class="empty">"Nothing is registered."</p> }.into_any();
            }
            view! {
                <table class="services">
                    <thead>
                        <tr>
                            <th>"Service"</th><th>"URL"</th><th>"State"</th>
                            <th class="num">"Latency"</th><th class="num">"Last probe"</th>
                            <th class="num">"Failures"</th><th>"Session"</th>
                        </tr>
                    </thead>
                    <tbody>{list.into_iter().map(row).collect_view()}</tbody>
                </table>
            }
            .into_any()
        }}
    }
}

fn row(s: ServiceStatus) -> impl IntoView {
    let passing = s.state == HealthState::Passing;
    view! {
        <tr>
            <td>{s.service_name}</td>
            <td><code>{s.service_url}</code></td>
            <td>
                <span class=if passing { "badge passing" } else { "badge critical" }>
                    {if passing { "passing" } else { "critical" }}
                </span>
            </td>
            <td class="num">{s.latency_ms.map_or("–".to_owned(), |l| format!("{l:.1} ms"))}</td>
            <td class="num">{s.last_probe_age_ms.map_or("never".to_owned(), |a| format!("{:.1} s ago", a as f64 / 1000.0))}</td>
            <td class="num">{s.consecutive_failures}</td>
            <td>{if s.session { "yes" } else { "no" }}</td>
        </tr>
    }
}
