//! Accounts over HTTP: EMQX's built-in database users and Gmqtt's `/v1/accounts`, both
//! backed by the configured password file (see `accounts.rs`).

use super::accounts::AccountError;
use super::api::{Op, Reply};
use super::Admin;
use serde_json::{json, Value};
use std::collections::HashMap;

fn reply(status: u16, v: Value) -> Reply {
    Reply {
        status,
        content_type: "application/json",
        body: if status == 204 {
            Vec::new()
        } else {
            v.to_string().into_bytes()
        },
    }
}

fn error(status: u16, code: &str, message: impl std::fmt::Display) -> Reply {
    reply(
        status,
        json!({"code": code, "message": message.to_string()}),
    )
}

fn failed(e: AccountError) -> Reply {
    match e {
        AccountError::Invalid(m) => error(400, "BAD_REQUEST", m),
        AccountError::NotFound => error(404, "NOT_FOUND", "no such user"),
        AccountError::Exists => error(409, "ALREADY_EXISTS", "the user exists already"),
        AccountError::Io(m) => error(500, "INTERNAL_ERROR", m),
    }
}

fn password(body: &[u8]) -> Result<String, Reply> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| error(400, "BAD_REQUEST", format!("the body must be JSON: {e}")))?;
    v["password"]
        .as_str()
        .map(Into::into)
        .ok_or_else(|| error(400, "BAD_REQUEST", "\"password\" is required"))
}

fn user_json(u: &str) -> Value {
    json!({"user_id": u, "is_superuser": false})
}

/// `/api/v5/authentication/password_based:built_in_database/users[/{user_id}]`.
pub fn users(admin: &Admin, op: Op, id: &str, q: &HashMap<String, String>, body: &[u8]) -> Reply {
    let Some(acc) = &admin.accounts else {
        return error(400, "BAD_REQUEST", "no password_file is configured");
    };
    let r = match op {
        Op::Users => acc.list().map(|all| {
            let like = q.get("like_user_id");
            let items: Vec<Value> = all
                .iter()
                .filter(|u| like.is_none_or(|l| u.contains(l.as_str())))
                .map(|u| user_json(u))
                .collect();
            let count = items.len();
            reply(200, json!({"data": items, "meta": {"page": 1, "limit": count.max(1), "count": count, "hasnext": false}}))
        }),
        Op::UserAdd => {
            let Ok(v) = serde_json::from_slice::<Value>(body) else {
                return error(400, "BAD_REQUEST", "the body must be JSON");
            };
            let (Some(u), Some(p)) = (v["user_id"].as_str(), v["password"].as_str()) else {
                return error(400, "BAD_REQUEST", "\"user_id\" and \"password\" are required");
            };
            acc.set(u, p, Some(false)).map(|()| reply(201, user_json(u)))
        }
        Op::User => acc.exists(id).map(|e| {
            if e {
                reply(200, user_json(id))
            } else {
                error(404, "NOT_FOUND", "no such user")
            }
        }),
        Op::UserUpdate => {
            let p = match password(body) {
                Ok(p) => p,
                Err(r) => return r,
            };
            acc.set(id, &p, Some(true)).map(|()| reply(200, user_json(id)))
        }
        _ => acc.delete(id).map(|()| reply(204, Value::Null)),
    };
    r.unwrap_or_else(failed)
}

/// Gmqtt's `/v1/accounts[/{username}]` (passwords are never sent back).
pub fn accounts(admin: &Admin, op: Op, user: &str, body: &[u8]) -> Reply {
    let Some(acc) = &admin.accounts else {
        return error(400, "BAD_REQUEST", "no password_file is configured");
    };
    let account = |u: &str| json!({"username": u, "password": ""});
    let r = match op {
        Op::Accounts => acc.list().map(|all| {
            let list: Vec<Value> = all.iter().map(|u| account(u)).collect();
            reply(200, json!({"accounts": list, "total_count": all.len()}))
        }),
        Op::Account => acc.exists(user).map(|e| {
            if e {
                reply(200, json!({"account": account(user)}))
            } else {
                error(404, "NOT_FOUND", "no such account")
            }
        }),
        Op::AccountSet => match password(body) {
            Ok(p) => acc.set(user, &p, None).map(|()| reply(200, json!({}))),
            Err(r) => return r,
        },
        _ => acc.delete(user).map(|()| reply(200, json!({}))),
    };
    r.unwrap_or_else(failed)
}
