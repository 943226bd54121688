//! Atomic quota reservations on both backends: concurrent uploads cannot together pass a limit.

use adiuva_access::Tier;
use adiuva_access::quota::{QuotaError, reserve, used_bytes};
use adiuva_access::tiers::Quota;

use crate::backend_tests;
use crate::harness::{Backend, spawn_app};

backend_tests!(
    concurrent_reservations_never_pass_the_limit,
    shrinking_always_succeeds
);

async fn concurrent_reservations_never_pass_the_limit(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let attempts = (0..20).map(|_| {
        let (db, user_id) = (app.database.db.clone(), user.id.clone());
        tokio::spawn(async move {
            let mut conn = db.pool().acquire().await.unwrap();
            reserve(
                &mut conn,
                &user_id,
                Tier::Pro,
                Quota::CloudStorage,
                100,
                Some(1000),
            )
            .await
        })
    });
    let results = futures::future::join_all(attempts).await;
    let granted = results.iter().filter(|r| matches!(r, Ok(Ok(())))).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(QuotaError::Exceeded(_)))))
        .count();
    assert_eq!((granted, refused), (10, 10), "{results:?}");
    let mut conn = app.database.db.pool().acquire().await.unwrap();
    assert_eq!(
        used_bytes(&mut conn, &user.id, Quota::CloudStorage)
            .await
            .unwrap(),
        1000
    );
    // Backups are accounted separately.
    assert_eq!(
        used_bytes(&mut conn, &user.id, Quota::Backup)
            .await
            .unwrap(),
        0
    );
}

async fn shrinking_always_succeeds(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let mut conn = app.database.db.pool().acquire().await.unwrap();
    reserve(&mut conn, &user.id, Tier::Team, Quota::Backup, 5000, None)
        .await
        .unwrap();
    // The tier dropped to a limit below current usage: growing is refused, shrinking is not.
    let grow = reserve(&mut conn, &user.id, Tier::Free, Quota::Backup, 1, Some(0)).await;
    assert!(matches!(grow, Err(QuotaError::Exceeded(_))), "{grow:?}");
    reserve(
        &mut conn,
        &user.id,
        Tier::Free,
        Quota::Backup,
        -2000,
        Some(0),
    )
    .await
    .unwrap();
    assert_eq!(
        used_bytes(&mut conn, &user.id, Quota::Backup)
            .await
            .unwrap(),
        3000
    );
}
