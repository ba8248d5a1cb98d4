//! The reference of every flag and environment variable (docs/configuration.md), generated from
//! the command line's own definition.

use super::cli::Cli;

/// The reference of every flag and environment variable, as Markdown, generated from this very
/// definition (docs/configuration.md is this output; a test keeps them equal).
pub fn reference() -> String {
    use clap::CommandFactory;
    let cli = Cli::command();
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the CLI definition by `restart-watcher config-reference`; `tests/docs.rs` fails when\n\
         this file and the code disagree. Every flag can also be set with its environment variable; a flag\n\
         given on the command line wins over the variable. `run` is the default subcommand: its flags work\n\
         without the word `run`.\n",
    );
    fn table<'a>(args: impl Iterator<Item = &'a clap::Arg>, out: &mut String) {
        out.push_str("\n| flag | environment variable | default | meaning |\n|---|---|---|---|\n");
        for arg in args {
            if arg.is_hide_set() || matches!(arg.get_id().as_str(), "help" | "version") {
                continue;
            }
            let flag = match (arg.get_long(), arg.get_short()) {
                (Some(l), Some(s)) => format!("`--{l}`, `-{s}`"),
                (Some(l), None) => format!("`--{l}`"),
                _ => format!(
                    "`<{}>` (positional)",
                    arg.get_value_names().and_then(|v| v.first()).map_or(arg.get_id().as_str(), |v| v.as_str())
                ),
            };
            let env = arg.get_env().map(|e| format!("`{}`", e.to_string_lossy())).unwrap_or_default();
            let defaults: Vec<String> =
                arg.get_default_values().iter().map(|d| d.to_string_lossy().into_owned()).collect();
            let default = if defaults.is_empty() { String::new() } else { format!("`{}`", defaults.join(",")) };
            let mut help =
                arg.get_help().map(|h| h.to_string()).unwrap_or_default().replace('\n', " ").replace('|', "\\|");
            let values: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| v.get_name().to_owned())
                .collect();
            if !help.is_empty() && !help.ends_with('.') {
                help.push('.');
            }
            if !values.is_empty() && !matches!(arg.get_action(), clap::ArgAction::SetTrue) {
                help.push_str(&format!(" Values: {}.", values.join(", ")));
            }
            out.push_str(&format!("| {flag} | {env} | {default} | {help} |\n"));
        }
    }
    out.push_str("\n## Global flags\n");
    table(cli.get_arguments().filter(|a| a.is_global_set()), &mut out);
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        out.push_str(&format!(
            "\n## `restart-watcher {}`\n\n{}\n",
            sub.get_name(),
            sub.get_about().map(|a| a.to_string()).unwrap_or_default()
        ));
        table(sub.get_arguments().filter(|a| !a.is_global_set()), &mut out);
    }
    out
}
