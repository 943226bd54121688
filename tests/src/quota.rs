//! Atomic quota reservations on both backends: concurrent uploads cannot together pass a limit.

use adiuva_access::AccessError;
use adiuva_access::Tier;
use adiuva_access::quota::{Delta, QuotaError, reserve, used_bytes};
use adiuva_access::tiers::Quota;

use crate::backend_tests;
use crate::harness::{Backend, spawn_app};

backend_tests!(
    concurrent_reservations_never_pass_the_limit,
    shrinking_always_succeeds,
    count_and_bytes_are_reserved_together
);

fn bytes(bytes: i64) -> Delta {
    Delta { count: 0, bytes }
}

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
                bytes(100),
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
    reserve(
        &mut conn,
        &user.id,
        Tier::Team,
        Quota::Backup,
        bytes(5000),
        None,
    )
    .await
    .unwrap();
    // The tier dropped to a limit below current usage: growing is refused, shrinking is not.
    let grow = reserve(
        &mut conn,
        &user.id,
        Tier::Free,
        Quota::Backup,
        bytes(1),
        Some(0),
    )
    .await;
    assert!(matches!(grow, Err(QuotaError::Exceeded(_))), "{grow:?}");
    reserve(
        &mut conn,
        &user.id,
        Tier::Free,
        Quota::Backup,
        bytes(-2000),
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

/// One reservation moves a quota's count and bytes at once, or neither, and says which limit
/// stopped it. The user's usage row is created by the first reservation.
async fn count_and_bytes_are_reserved_together(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let mut conn = app.database.db.pool().acquire().await.unwrap();
    let (app, user) = (&app, &user);
    let count = move |n: i64| async move {
        let mut conn = app.database.db.pool().acquire().await.unwrap();
        let (count, bytes): (i64, i64) = adiuva_db::sqlx::query_as(
            "SELECT backup_count, backup_bytes FROM storage_usage WHERE user_id = $1",
        )
        .bind(&user.id)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert_eq!(count, n, "backup count");
        bytes
    };
    let backup = |bytes: i64| Delta { count: 1, bytes };
    // Pro keeps at most 100 backups (the tier's count limit) within the bytes given here.
    let limit = Some(1000);
    reserve(
        &mut conn,
        &user.id,
        Tier::Pro,
        Quota::Backup,
        backup(600),
        limit,
    )
    .await
    .unwrap();
    assert_eq!(count(1).await, 600);
    // Over the bytes: refused as a quota, and the count did not move either.
    let over = reserve(
        &mut conn,
        &user.id,
        Tier::Pro,
        Quota::Backup,
        backup(401),
        limit,
    )
    .await;
    assert!(
        matches!(
            over,
            Err(QuotaError::Exceeded(AccessError::QuotaExceeded {
                quota: Quota::Backup,
                ..
            }))
        ),
        "{over:?}"
    );
    assert_eq!(count(1).await, 600);
    // At the count limit: refused as a count, and the bytes did not move either.
    adiuva_db::sqlx::query("UPDATE storage_usage SET backup_count = 100 WHERE user_id = $1")
        .bind(&user.id)
        .execute(&mut *conn)
        .await
        .unwrap();
    let full = reserve(
        &mut conn,
        &user.id,
        Tier::Pro,
        Quota::Backup,
        backup(1),
        limit,
    )
    .await;
    assert!(
        matches!(
            full,
            Err(QuotaError::Exceeded(AccessError::CountExceeded {
                what: "backups",
                limit: 100,
                ..
            }))
        ),
        "{full:?}"
    );
    assert_eq!(count(100).await, 600);
    // Removing always passes, whatever the tier.
    let removed = Delta {
        count: -1,
        bytes: -600,
    };
    reserve(
        &mut conn,
        &user.id,
        Tier::Free,
        Quota::Backup,
        removed,
        Some(0),
    )
    .await
    .unwrap();
    assert_eq!(count(99).await, 0);
}
