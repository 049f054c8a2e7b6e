//! `/services`: every registration the registry knows, refreshed every
//! second — the system's status monitor.

use gradebook_shared::registry::HealthState;
use leptos::prelude::*;
use leptos_meta::Title;

use super::Problem;
use crate::api::Api;

#[component]
pub fn ServicesPage() -> impl IntoView {
    let api = Api::current();
    let tick = RwSignal::new(0u64);
    let services = Resource::new(
        move || tick.get(),
        move |_| {
            let api = api.clone();
            async move { api.services().await }
        },
    );
    #[cfg(feature = "client")]
    {
        let handle = set_interval_with_handle(move || tick.update(|t| *t += 1), std::time::Duration::from_secs(1)).ok();
        on_cleanup(move || {
            if let Some(h) = handle {
                h.clear();
            }
        });
    }
    view! {
        <Title text="Services · Grade Book"/>
        <h1>"Services"</h1>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match services.await {
                    Err(error) => view! { <Problem error/> }.into_any(),
                    Ok(list) if list.is_empty() => view! { <p class="empty">"Nothing is registered."</p> }.into_any(),
                    Ok(list) => view! {
                        <table class="services">
                            <thead>
                                <tr>
                                    <th>"Service"</th><th>"URL"</th><th>"State"</th>
                                    <th class="num">"Latency"</th><th class="num">"Last probe"</th>
                                    <th class="num">"Failures"</th><th>"Session"</th>
                                </tr>
                            </thead>
                            <tbody>
                                {list.into_iter().map(|s| {
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
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}
