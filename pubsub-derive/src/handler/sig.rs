//! What a handler's signature may be: `async fn name(event: E) -> Result<(), Err>` or
//! `async fn name(event: E, ctx: Context) -> Result<(), Err>`.
//!
//! Only the shape is checked here. Whether `E` is an event, the second argument a
//! `Context` and the return type a `Result` is left to the trait bounds in the generated
//! code, whose `#[diagnostic::on_unimplemented]` messages point at the user's types.

use syn::{FnArg, Ident, ReturnType, Signature, Type};

use crate::ctxt::Ctxt;

/// The parts of a valid handler signature the expansion needs.
pub(crate) struct HandlerSig<'a> {
    /// The fn's name.
    pub(crate) ident: &'a Ident,
    /// The first argument's type: a typed event or `RawEvent`.
    pub(crate) event: &'a Type,
    /// The second argument's type, normally `Context`.
    pub(crate) context: Option<&'a Type>,
    /// The declared return type.
    pub(crate) output: &'a Type,
}

/// Checks the signature, recording every problem; `None` if it cannot be registered.
pub(crate) fn check<'a>(cx: &Ctxt, sig: &'a Signature) -> Option<HandlerSig<'a>> {
    let ident = &sig.ident;
    if sig.asyncness.is_none() {
        cx.error_spanned_by(
            sig.fn_token,
            format!("a handler must be an `async fn`: write `async fn {ident}(...)`"),
        );
    }
    if let Some(token) = &sig.constness {
        cx.error_spanned_by(token, "a handler cannot be a `const fn`");
    }
    if let Some(token) = &sig.unsafety {
        cx.error_spanned_by(token, "a handler cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        cx.error_spanned_by(abi, "a handler cannot have an `extern` ABI");
    }
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(
            &sig.generics,
            "a handler cannot be generic: it is registered once, for one concrete event type",
        );
    }

    let mut types = Vec::new();
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(receiver) => cx.error_spanned_by(
                receiver,
                "`#[handler]` goes on a free `async fn`, not a method: remove `self` \
                 (shared state comes from `ctx.state::<T>()`)",
            ),
            FnArg::Typed(typed) => {
                check_argument_type(cx, &typed.ty);
                types.push(&*typed.ty);
            }
        }
    }
    if sig.inputs.is_empty() {
        cx.error_at(
            sig.paren_token.span.join(),
            format!(
                "a handler takes the event as its first argument: \
                 `async fn {ident}(event: OrderCreated)` or `async fn {ident}(event: RawEvent)`"
            ),
        );
    }
    if types.len() > 2 {
        let extra: Vec<_> = sig.inputs.iter().skip(2).collect();
        cx.error_spanned_by(
            quote::quote!(#(#extra),*),
            "a handler takes at most two arguments: the event and `ctx: Context`",
        );
    }

    let output = match &sig.output {
        ReturnType::Type(_, ty) => Some(&**ty),
        ReturnType::Default => {
            cx.error_at(
                sig.paren_token.span.close(),
                format!(
                    "a handler must return `Result<(), E>`, or for a request its reply type: \
                     write `async fn {ident}(...) -> Result<(), HandlerError>` \
                     (`-> Result<UserProfile, HandlerError>` for a request with \
                     `reply = UserProfile`)"
                ),
            );
            None
        }
    };
    Some(HandlerSig {
        ident,
        event: types.first()?,
        context: types.get(1).copied(),
        output: output?,
    })
}

fn check_argument_type(cx: &Ctxt, ty: &Type) {
    match ty {
        Type::Reference(reference) => cx.error_spanned_by(
            reference,
            "handler arguments are taken by value: write `event: OrderCreated`, `ctx: Context`",
        ),
        Type::ImplTrait(_) => cx.error_spanned_by(
            ty,
            "a handler argument cannot be `impl Trait`: name the event type",
        ),
        _ => {}
    }
}

/// Whether `ty` is spelled `RawEvent` (possibly with a path), the untyped input that needs
/// a pattern.
pub(crate) fn is_raw_event(ty: &Type) -> bool {
    match ty {
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "RawEvent"),
        Type::Group(group) => is_raw_event(&group.elem),
        Type::Paren(paren) => is_raw_event(&paren.elem),
        _ => false,
    }
}
