//! `mesg account create|list`.

use super::{Ctx, print_json};
use crate::accounts;
use crate::args::AccountCommand;
use crate::output::{Cell, Paint, Table, errln, outln, pe, po};
use serde_json::json;

pub fn run(ctx: &Ctx, cmd: AccountCommand) -> anyhow::Result<()> {
    let home = accounts::mesg_home()?;
    match cmd {
        AccountCommand::Create { name } => {
            let a = accounts::create(&home, &name)?;
            if ctx.json() {
                print_json(&json!({
                    "name": a.name,
                    "public_key": a.public_key.to_string(),
                    "path": a.path.display().to_string(),
                }));
            } else {
                outln!("{} account {}", po(Paint::Green, "created"), a.name);
                outln!("public key: {}", a.public_key);
                outln!(
                    "key file:   {} (keep it secret; it is the account)",
                    a.path.display()
                );
                outln!(
                    "use it:     mesg --account {} exec SERVICE TASK ...",
                    a.name
                );
            }
        }
        AccountCommand::List => {
            let list = accounts::list(&home)?;
            if ctx.json() {
                let items: Vec<_> = list
                    .iter()
                    .filter_map(|a| a.as_ref().ok())
                    .map(|a| {
                        json!({
                            "name": a.name,
                            "public_key": a.public_key.to_string(),
                            "path": a.path.display().to_string(),
                        })
                    })
                    .collect();
                print_json(&json!({ "accounts": items }));
            } else if list.is_empty() {
                outln!(
                    "no accounts in {}; create one with `mesg account create`",
                    home.join("accounts").display()
                );
            } else {
                let mut table = Table::new(&["NAME", "PUBLIC KEY"]);
                for a in list.iter().filter_map(|a| a.as_ref().ok()) {
                    let name = if ctx.global.account.as_deref() == Some(a.name.as_str()) {
                        Cell::painted(format!("{} *", a.name), Paint::Bold)
                    } else {
                        a.name.clone().into()
                    };
                    table.row(vec![name, a.public_key.to_string().into()]);
                }
                if !table.is_empty() {
                    table.print();
                }
            }
            for a in &list {
                match a {
                    Err(e) => errln!("{} {e}", pe(Paint::Yellow, "warning:")),
                    Ok(a) if accounts::too_open(&a.path) => errln!(
                        "{} {} is readable by other users; run chmod 600 {}",
                        pe(Paint::Yellow, "warning:"),
                        a.path.display(),
                        a.path.display()
                    ),
                    Ok(_) => {}
                }
            }
        }
    }
    Ok(())
}
