//! `whospoke admin`: accounts, keys and credits, straight on the database
//! (safe while the server runs).

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use serde_json::json;
use whospoke::db::Db;

#[derive(clap::Args)]
pub struct Args {
    /// The server's data directory.
    #[arg(long, env = "WHOSPOKE_DATA_DIR", default_value = "data", global = true)]
    data_dir: PathBuf,
    /// The server's database (default: `sqlite://<data-dir>/whospoke.db`).
    #[arg(long, env = "WHOSPOKE_DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Create a user and its first API key.
    CreateUser {
        /// Starting balance.
        #[arg(long, default_value_t = 0)]
        credits: i64,
    },
    /// Create another API key for a user.
    CreateKey {
        #[arg(long)]
        user: String,
    },
    /// Add credits to a user's balance (negative to take some away).
    GrantCredits {
        #[arg(long)]
        user: String,
        #[arg(long, allow_negative_numbers = true)]
        credits: i64,
    },
    /// List users with their balances.
    ListUsers,
}

pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&e.to_string()),
    };
    match runtime.block_on(admin(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

async fn admin(args: Args) -> Result<(), String> {
    let url = match &args.database_url {
        Some(url) => url.clone(),
        None => {
            std::fs::create_dir_all(&args.data_dir)
                .map_err(|e| format!("{}: {e}", args.data_dir.display()))?;
            Db::default_url(&args.data_dir)
        }
    };
    let db = Db::connect(&url).await.map_err(|e| e.to_string())?;
    let err = |e: whospoke::db::DbError| e.to_string();
    match args.command {
        Command::CreateUser { credits } => {
            if credits < 0 {
                return Err("--credits must not be negative".into());
            }
            let user_id = db.create_user(credits).await.map_err(err)?;
            let key = db.create_key(&user_id).await.map_err(err)?;
            print(
                args.json,
                &json!({ "user_id": user_id, "api_key": key.api_key, "credits": credits }),
            );
        }
        Command::CreateKey { user } => {
            let key = db.create_key(&user).await.map_err(err)?;
            print(args.json, &key);
        }
        Command::GrantCredits { user, credits } => {
            let balance = db.grant_credits(&user, credits).await.map_err(err)?;
            print(args.json, &json!({ "user_id": user, "credits": balance }));
        }
        Command::ListUsers => {
            let users = db.list_users().await.map_err(err)?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&users).unwrap_or_default()
                );
            } else {
                println!("{:<38} {:>12} {:>5}  created", "user_id", "credits", "keys");
                for user in users {
                    println!(
                        "{:<38} {:>12} {:>5}  {}",
                        user.user_id, user.credits, user.keys, user.created_at
                    );
                }
            }
        }
    }
    Ok(())
}

/// One object as JSON, or as `key: value` lines.
fn print(as_json: bool, value: &impl Serialize) {
    let value = serde_json::to_value(value).unwrap_or_default();
    if as_json {
        println!("{value}");
        return;
    }
    if let Some(fields) = value.as_object() {
        for (key, value) in fields {
            match value.as_str() {
                Some(text) => println!("{key}: {text}"),
                None => println!("{key}: {value}"),
            }
        }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("whospoke admin: {message}");
    ExitCode::FAILURE
}
