//! The dashboard's sign-in page.

use super::*;

#[derive(Template)]
#[template(path = "dashboard/login.html")]
struct LoginPage {
    css_url: &'static str,
    error: Option<String>,
    ttl_hours: String,
}

fn login_page(sessions: &Sessions, error: Option<String>, status: StatusCode) -> Page {
    let hours = sessions.ttl().as_secs_f64() / 3600.0;
    let page = LoginPage {
        css_url: assets::css_url(),
        error,
        ttl_hours: if hours.fract() == 0.0 {
            format!("{hours:.0}")
        } else {
            format!("{hours:.1}")
        },
    };
    let mut res = html(&page)?;
    *res.status_mut() = status;
    Ok(res)
}

/// `GET /learning/login`.
pub async fn login_form(sessions: web::Data<Sessions>) -> Page {
    login_page(&sessions, None, StatusCode::OK)
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    api_key: String,
}

/// `POST /learning/login`: a valid workspace key starts a session (303 to
/// the overview with the cookie); anything else shows the form again with
/// the reason (401), and starts nothing.
pub async fn login(
    state: web::Data<AppState>,
    sessions: web::Data<Sessions>,
    form: web::Form<LoginForm>,
) -> Page {
    let key = form.api_key.trim();
    if key.is_empty() {
        return login_page(
            &sessions,
            Some("Enter your workspace API key.".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    if key.len() > 512 {
        return login_page(
            &sessions,
            Some("That is not an API key (too long).".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let hash = hash_key(key);
    match caller_of_digest(&state, hash.clone()).await? {
        Some(Caller::Workspace(ws)) => {
            let (id, _) = sessions
                .start(hash, ws)
                .await
                .map_err(|e| DashError::Api(e.into()))?;
            let mut cookie = format!(
                "{COOKIE}={id}; Path=/learning; HttpOnly; SameSite=Strict; Max-Age={}",
                sessions.ttl().as_secs()
            );
            if state.settings.dashboard.secure_cookie {
                cookie.push_str("; Secure");
            }
            Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/learning"))
                .insert_header((header::SET_COOKIE, cookie))
                .finish())
        }
        Some(Caller::Admin) => login_page(
            &sessions,
            Some("The admin key manages workspaces and cannot sign in here; use a workspace API key.".into()),
            StatusCode::FORBIDDEN,
        ),
        None => login_page(
            &sessions,
            Some("Unknown or revoked API key. Check the key, or ask the operator for a new one.".into()),
            StatusCode::UNAUTHORIZED,
        ),
    }
}

/// A form that only carries the CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub(super) csrf: Option<String>,
}

/// `POST /learning/logout`: ends the session, clears the cookie.
pub async fn logout(
    req: HttpRequest,
    sessions: web::Data<Sessions>,
    form: web::Form<CsrfForm>,
) -> Page {
    if let Some(id) = session_id(&req) {
        if let Some(s) = sessions
            .get(&id)
            .await
            .map_err(|e| DashError::Api(e.into()))?
        {
            let signed = Signed {
                id: id.clone(),
                session: s,
            };
            signed.check_csrf(form.csrf.as_deref())?;
            sessions
                .end(&id)
                .await
                .map_err(|e| DashError::Api(e.into()))?;
        }
    }
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/learning/login"))
        .insert_header((
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/learning; HttpOnly; SameSite=Strict; Max-Age=0"),
        ))
        .finish())
}
