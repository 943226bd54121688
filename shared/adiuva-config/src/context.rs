//! The context a function is built from: the settings source and the components built from it,
//! each once per process.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::{ConfigError, Env, Source};

/// Something built from the context once per process and shared by clones afterwards: a
/// subsystem's settings, a pool, a client, a service. `build` may ask the context for other
/// components; it must do no network I/O.
pub trait Component: Clone + Send + Sync + 'static {
    fn build(context: &Context) -> Result<Self, ConfigError>;
}

type Components = HashMap<TypeId, Box<dyn Any + Send + Sync>>;

/// Settings plus lazily built components. Cheap to clone; clones share the components.
#[derive(Clone)]
pub struct Context {
    source: Arc<Source>,
    env: Env,
    components: Arc<Mutex<Components>>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("env", &self.env)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// The context of a process: the environment and `.env`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::new(Source::from_env()?)
    }

    pub fn new(source: Source) -> Result<Self, ConfigError> {
        let env = source.env()?;
        Ok(Self {
            source: Arc::new(source),
            env,
            components: Arc::default(),
        })
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    pub fn env(&self) -> Env {
        self.env
    }

    pub fn is_prod(&self) -> bool {
        self.env == Env::Prod
    }

    /// The component of type `C`, built on first request. Two threads asking at once may both
    /// build it; the first one stored wins, so every caller shares one instance.
    pub fn get<C: Component>(&self) -> Result<C, ConfigError> {
        if let Some(existing) = self.cached::<C>() {
            return Ok(existing);
        }
        // Built outside the lock: building may ask for other components.
        let built = C::build(self)?;
        let mut components = self.lock();
        let stored = components
            .entry(TypeId::of::<C>())
            .or_insert_with(|| Box::new(built));
        Ok(stored
            .downcast_ref::<C>()
            .expect("components are stored under their own type id")
            .clone())
    }

    /// Puts a component in place before anyone asks for it (tests wrap the blob store in a
    /// fault injector this way). Replaces one that was built already.
    pub fn provide<C: Component>(&self, component: C) {
        self.lock().insert(TypeId::of::<C>(), Box::new(component));
    }

    fn cached<C: Component>(&self) -> Option<C> {
        self.lock()
            .get(&TypeId::of::<C>())
            .and_then(|component| component.downcast_ref::<C>())
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Components> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts).
        self.components
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    static BUILDS: AtomicUsize = AtomicUsize::new(0);

    #[derive(Clone, Debug, PartialEq)]
    struct Port(u16);

    impl Component for Port {
        fn build(context: &Context) -> Result<Self, ConfigError> {
            BUILDS.fetch_add(1, Ordering::SeqCst);
            context.source().number("PORT", 8000).map(Port)
        }
    }

    #[derive(Clone, Debug)]
    struct Url(String);

    impl Component for Url {
        fn build(context: &Context) -> Result<Self, ConfigError> {
            let Port(port) = context.get()?;
            Ok(Url(format!("http://127.0.0.1:{port}")))
        }
    }

    #[test]
    fn components_are_built_once_and_may_depend_on_each_other() {
        let context = Context::new(Source::from_pairs([("PORT", "9")])).unwrap();
        let Url(url) = context.get().unwrap();
        assert_eq!(url, "http://127.0.0.1:9");
        let before = BUILDS.load(Ordering::SeqCst);
        assert_eq!(context.clone().get::<Port>().unwrap(), Port(9));
        assert_eq!(BUILDS.load(Ordering::SeqCst), before, "built twice");
    }

    /// A component of its own: `Port`'s build count belongs to the test above, and tests run
    /// in parallel.
    #[derive(Clone, Debug, PartialEq)]
    struct Timeout(u16);

    impl Component for Timeout {
        fn build(context: &Context) -> Result<Self, ConfigError> {
            context.source().number("TIMEOUT", 30).map(Timeout)
        }
    }

    #[test]
    fn a_bad_setting_fails_only_its_component() {
        let context = Context::new(Source::from_pairs([("TIMEOUT", "x")])).unwrap();
        assert!(context.get::<Timeout>().is_err());
        context.provide(Timeout(1));
        assert_eq!(context.get::<Timeout>().unwrap(), Timeout(1));
    }
}
