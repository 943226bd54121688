//! `#[route(...)]`, re-exported as `adiuva_http::route`: a handler's declaration, written in
//! utoipa's `#[utoipa::path]` syntax (`#[route(get, path = "/api/v1/health", tag = "health",
//! responses(...))]`).
//!
//! Every build gets the declaration's method and path, which is all a router needs: a
//! `__path_<handler>` struct implementing `adiuva_http::Declaration`. With the `openapi` feature
//! of the crate the handler is in (evaluated there, as the output is that crate's code), the
//! same arguments also go to `utoipa::path`, which documents the operation, and the declaration
//! adds that operation to the document. Without it, nothing of utoipa is named, so the request
//! and response types need no `ToSchema` and a Lambda build compiles no OpenAPI code at all.

use proc_macro::{Delimiter, TokenStream, TokenTree};

/// The methods a declaration may name, as utoipa spells them, and as HTTP does.
const METHODS: &[(&str, &str)] = &[
    ("get", "GET"),
    ("post", "POST"),
    ("put", "PUT"),
    ("delete", "DELETE"),
    ("patch", "PATCH"),
    ("head", "HEAD"),
    ("options", "OPTIONS"),
    ("trace", "TRACE"),
];

/// See the crate's documentation.
#[proc_macro_attribute]
pub fn route(args: TokenStream, item: TokenStream) -> TokenStream {
    match expand(&args, &item) {
        Ok(output) => output,
        Err(message) => format!("::core::compile_error!({message:?});")
            .parse()
            .expect("a compile_error! call parses"),
    }
}

fn expand(args: &TokenStream, item: &TokenStream) -> Result<TokenStream, String> {
    let arguments = split_arguments(args.clone());
    let method = match arguments.first().map(Vec::as_slice) {
        Some([TokenTree::Ident(ident)]) => {
            let name = ident.to_string();
            METHODS
                .iter()
                .find(|(utoipa, _)| *utoipa == name)
                .map(|(_, http)| *http)
                .ok_or_else(|| format!("#[route]: `{name}` is not a method (get, post, ...)"))?
        }
        _ => return Err("#[route]: the first argument is the method: `get`, `post`, ...".into()),
    };
    let path = arguments
        .iter()
        .find_map(|argument| match argument.as_slice() {
            [
                TokenTree::Ident(key),
                TokenTree::Punct(eq),
                TokenTree::Literal(value),
            ] if key.to_string() == "path" && eq.as_char() == '=' => Some(value.to_string()),
            _ => None,
        })
        .ok_or("#[route]: `path = \"...\"` is missing")?;
    if !(path.starts_with('"') && path.ends_with('"') && !path.contains('\\')) {
        return Err("#[route]: the path is a plain string literal".into());
    }
    let handler = handler_name(item.clone()).ok_or("#[route] goes on a handler `fn`")?;
    let declaration = format!(
        r#"
        #[cfg(not(feature = "openapi"))]
        #[allow(non_camel_case_types)]
        #[doc(hidden)]
        #[derive(Clone)]
        pub struct __path_{handler};

        impl ::adiuva_http::Declaration for __path_{handler} {{
            const PATH: &'static str = {path};
            const METHODS: &'static [&'static str] = &["{method}"];
            #[cfg(feature = "openapi")]
            fn document(operations: &mut ::adiuva_http::Operations) {{
                operations.add::<Self>();
            }}
        }}
        "#
    );
    let mut output: TokenStream =
        format!("#[cfg_attr(feature = \"openapi\", ::utoipa::path({args}))]")
            .parse()
            .map_err(|_| "#[route]: the arguments do not parse")?;
    output.extend(item.clone());
    output.extend(
        declaration
            .parse::<TokenStream>()
            .map_err(|_| "#[route]: the declaration does not parse")?,
    );
    Ok(output)
}

/// The arguments between top-level commas.
fn split_arguments(args: TokenStream) -> Vec<Vec<TokenTree>> {
    let mut arguments = vec![Vec::new()];
    for token in args {
        match &token {
            TokenTree::Punct(punct) if punct.as_char() == ',' => arguments.push(Vec::new()),
            _ => arguments
                .last_mut()
                .expect("one argument at least")
                .push(token),
        }
    }
    arguments.retain(|argument| !argument.is_empty());
    arguments
}

/// The name after `fn`, outside any group (attributes and the body are groups).
fn handler_name(item: TokenStream) -> Option<String> {
    let mut tokens = item.into_iter();
    while let Some(token) = tokens.next() {
        match token {
            TokenTree::Ident(ident) if ident.to_string() == "fn" => {
                return match tokens.next() {
                    Some(TokenTree::Ident(name)) => Some(name.to_string()),
                    _ => None,
                };
            }
            TokenTree::Group(group) if group.delimiter() == Delimiter::Brace => return None,
            _ => {}
        }
    }
    None
}
