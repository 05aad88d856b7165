//! The export macros: they connect an author's [`crate::Strategy`] or
//! [`crate::Validator`] to the component's exports.

/// Exports a [`Strategy`](crate::Strategy) implementation as the plugin's `strategy` world.
///
/// Invoke it once per plugin crate, at module level: `export_strategy!(MyStrategy);`.
#[macro_export]
macro_rules! export_strategy {
    ($plugin:ty) => {
        const _: () = {
            struct GigaspotStrategyExport;

            ::std::thread_local! {
                static PLUGIN: ::core::cell::RefCell<::core::option::Option<$plugin>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            impl $crate::__private::strategy::Guest for GigaspotStrategyExport {
                fn info() -> $crate::PluginInfo {
                    <$plugin as $crate::Strategy>::info()
                }

                fn configure(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    let plugin = <$plugin as $crate::Strategy>::configure(&config)?;
                    PLUGIN.with(|slot| *slot.borrow_mut() = ::core::option::Option::Some(plugin));
                    ::core::result::Result::Ok(())
                }

                fn rank(
                    machine: $crate::__private::strategy::gigaspot::plugin::types::Machine,
                    book: $crate::__private::strategy::gigaspot::plugin::types::Book,
                ) -> ::std::vec::Vec<$crate::Score> {
                    let machine = $crate::__machine(&machine);
                    let tables = $crate::__tables(&book);
                    let bids = $crate::__bids(&tables);
                    PLUGIN.with(|slot| {
                        let slot = slot.borrow();
                        let plugin = slot
                            .as_ref()
                            .expect("the market calls configure before rank");
                        <$plugin as $crate::Strategy>::rank(plugin, &machine, &bids)
                    })
                }
            }

            $crate::__export_strategy_impl!(
                GigaspotStrategyExport with_types_in $crate::__private::strategy
            );
        };
    };
}

/// Exports a [`Validator`](crate::Validator) implementation as the plugin's `validator`
/// world.
///
/// Invoke it once per plugin crate, at module level: `export_validator!(MyValidator);`.
#[macro_export]
macro_rules! export_validator {
    ($plugin:ty) => {
        const _: () = {
            struct GigaspotValidatorExport;

            ::std::thread_local! {
                static PLUGIN: ::core::cell::RefCell<::core::option::Option<$plugin>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            impl $crate::__private::validator::Guest for GigaspotValidatorExport {
                fn info() -> $crate::PluginInfo {
                    <$plugin as $crate::Validator>::info()
                }

                fn configure(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    let plugin = <$plugin as $crate::Validator>::configure(&config)?;
                    PLUGIN.with(|slot| *slot.borrow_mut() = ::core::option::Option::Some(plugin));
                    ::core::result::Result::Ok(())
                }

                fn validate(
                    machine: $crate::__private::strategy::gigaspot::plugin::types::Machine,
                    book: $crate::__private::strategy::gigaspot::plugin::types::Book,
                ) -> ::std::vec::Vec<$crate::Rejection> {
                    let machine = $crate::__machine(&machine);
                    let tables = $crate::__tables(&book);
                    let bids = $crate::__bids(&tables);
                    PLUGIN.with(|slot| {
                        let slot = slot.borrow();
                        let plugin = slot
                            .as_ref()
                            .expect("the market calls configure before validate");
                        <$plugin as $crate::Validator>::validate(plugin, &machine, &bids)
                    })
                }
            }

            $crate::__export_validator_impl!(
                GigaspotValidatorExport with_types_in $crate::__private::validator
            );
        };
    };
}
