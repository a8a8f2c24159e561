//! The console's HTML pages and its embedded assets (`assets/`, compiled into
//! the binary with `include_str!`; edit them directly, there is no build step).

/// The console's script.
const APP_JS: &str = include_str!("assets/app.js");
/// The console's stylesheet.
const APP_CSS: &str = include_str!("assets/app.css");
/// The console's icon.
const ICON_SVG: &str = include_str!("assets/icon.svg");

/// The content type and body of asset `file`, if there is one.
pub fn asset(file: &str) -> Option<(&'static str, &'static str)> {
    match file {
        "app.js" => Some(("text/javascript; charset=utf-8", APP_JS)),
        "app.css" => Some(("text/css; charset=utf-8", APP_CSS)),
        "icon.svg" => Some(("image/svg+xml", ICON_SVG)),
        _ => None,
    }
}

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn head(title: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"color-scheme\" content=\"light dark\">\
<title>{}</title><link rel=\"icon\" href=\"/studio/assets/icon.svg\" type=\"image/svg+xml\">\
<link rel=\"stylesheet\" href=\"/studio/assets/app.css\">",
        escape(title)
    )
}

/// The sign-in page: the only thing a visitor without a session sees.
pub fn sign_in(error: Option<&str>) -> String {
    let error = error
        .map(|e| {
            format!(
                "<p class=\"error\" role=\"alert\" id=\"signin-error\">{}</p>",
                escape(e)
            )
        })
        .unwrap_or_default();
    format!(
        "{}</head><body class=\"signin\"><main class=\"signin-box\">\
<h1><img src=\"/studio/assets/icon.svg\" alt=\"\" width=\"28\" height=\"28\"> Berth Studio</h1>\
<form method=\"post\" action=\"/studio/signin\" autocomplete=\"off\">\
<label for=\"token\">Workspace token</label>\
<input id=\"token\" name=\"token\" type=\"password\" required autofocus aria-describedby=\"token-help\">\
<p id=\"token-help\" class=\"muted\">In <code>workspace-token</code> in the server's data directory. \
Or run <code>berth studio login</code> for a one-time sign-in link.</p>\
{error}<button type=\"submit\">Sign in</button></form></main></body></html>\n",
        head("Sign in · Berth Studio")
    )
}

/// The console shell for a signed-in session; the script renders the pages.
pub fn console(csrf: &str, workspace: &str) -> String {
    format!(
        "{}<meta name=\"berth-csrf\" content=\"{}\"><meta name=\"berth-workspace\" content=\"{}\">\
<script src=\"/studio/assets/app.js\" defer></script></head><body>\
<a class=\"skip\" href=\"#main\">Skip to content</a>\
<header class=\"top\"><a class=\"brand\" href=\"#/services\"><img src=\"/studio/assets/icon.svg\" alt=\"\" width=\"22\" height=\"22\"> Berth Studio</a>\
<span class=\"workspace\" title=\"Workspace\">{}</span>\
<nav aria-label=\"Sections\"><a href=\"#/services\">Services</a><a href=\"#/models\">Models</a>\
<a href=\"#/environments\">Environments</a><a href=\"#/events\">Events</a><a href=\"#/webhooks\">Webhooks</a></nav>\
<button type=\"button\" id=\"signout\" class=\"secondary\">Sign out</button></header>\
<main id=\"main\" tabindex=\"-1\"><p class=\"muted\">Loading…</p></main>\
<div id=\"toast\" role=\"status\" aria-live=\"polite\"></div></body></html>\n",
        head("Berth Studio"),
        escape(csrf),
        escape(workspace),
        escape(workspace)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_in_page_shows_only_the_form() {
        let html = sign_in(Some("bad <token>"));
        assert!(html.contains("name=\"token\""));
        assert!(html.contains("bad &lt;token&gt;"));
        assert!(!html.contains("app.js"), "no console script before sign-in");
        assert!(!html.contains("berth-csrf"));
    }

    #[test]
    fn the_console_carries_the_escaped_csrf_token() {
        let html = console("abc\"def", "ws<1>");
        assert!(html.contains("content=\"abc&quot;def\""));
        assert!(html.contains("ws&lt;1&gt;"));
        assert!(html.contains("/studio/assets/app.js"));
    }

    #[test]
    fn assets_are_embedded_and_small() {
        let total: usize = ["app.js", "app.css", "icon.svg"]
            .iter()
            .map(|f| asset(f).map(|(_, b)| b.len()).unwrap_or(0))
            .sum();
        assert!(asset("app.js").is_some() && asset("../secret").is_none());
        assert!(total < 300 * 1024, "console assets are {total} bytes");
    }
}
