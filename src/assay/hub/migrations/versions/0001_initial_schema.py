"""Initial schema: models (by weights root), aliases, manifests, keys, tokens, attestations, metrics, claims,
fingerprints and the audit log.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=True),
    sa.Column('key_name', sa.String(length=100), nullable=True),
    sa.Column('model_id', sa.Integer(), nullable=True),
    sa.Column('attestation_digest', sa.String(length=64), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_at'), ['at'], unique=False)

    op.create_table('keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('public_pem', sa.Text(), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('weights_root', sa.String(length=128), nullable=False),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('architecture', sa.String(length=200), nullable=True),
    sa.Column('parameters', sa.BigInteger(), nullable=True),
    sa.Column('licence', sa.String(length=200), nullable=True),
    sa.Column('size_tier', sa.String(length=20), nullable=True),
    sa.Column('base_weights_root', sa.String(length=128), nullable=True),
    sa.Column('base_name', sa.String(length=200), nullable=True),
    sa.Column('relation', sa.String(length=40), nullable=True),
    sa.Column('measured_parent_id', sa.Integer(), nullable=True),
    sa.Column('parent_evidence', sa.JSON(), nullable=True),
    sa.Column('latest_attestation_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['measured_parent_id'], ['models.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('weights_root')
    )
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.create_index('ix_models_family', ['base_weights_root', 'base_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_models_latest_attestation_id'), ['latest_attestation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_models_licence'), ['licence'], unique=False)

    op.create_table('tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('aliases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name', 'model_id')
    )
    with op.batch_alter_table('aliases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_aliases_model_id'), ['model_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_aliases_name'), ['name'], unique=False)

    op.create_table('claims',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('task', sa.String(length=200), nullable=False),
    sa.Column('dataset', sa.String(length=200), nullable=True),
    sa.Column('metric', sa.String(length=100), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('imported_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_claims_model_id'), ['model_id'], unique=False)

    op.create_table('fingerprints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('model_id')
    )
    op.create_table('manifests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('algorithm', sa.String(length=20), nullable=False),
    sa.Column('files', sa.JSON(), nullable=False),
    sa.Column('total_bytes', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('digest')
    )
    with op.batch_alter_table('manifests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_manifests_model_id'), ['model_id'], unique=False)

    op.create_table('attestations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('manifest_id', sa.Integer(), nullable=False),
    sa.Column('key_id', sa.Integer(), nullable=False),
    sa.Column('token_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('verdict', sa.String(length=20), nullable=True),
    sa.Column('base_weights_root', sa.String(length=128), nullable=True),
    sa.Column('base_name', sa.String(length=200), nullable=True),
    sa.Column('reproduces_id', sa.Integer(), nullable=True),
    sa.Column('reproduced_ok', sa.Boolean(), nullable=True),
    sa.Column('cost_per_task', sa.Float(), nullable=True),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('envelope', sa.JSON(), nullable=False),
    sa.Column('predicate', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['key_id'], ['keys.id'], ),
    sa.ForeignKeyConstraint(['manifest_id'], ['manifests.id'], ),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], ),
    sa.ForeignKeyConstraint(['reproduces_id'], ['attestations.id'], ),
    sa.ForeignKeyConstraint(['token_id'], ['tokens.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('digest')
    )
    with op.batch_alter_table('attestations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attestations_model_id'), ['model_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_attestations_published_at'), ['published_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_attestations_reproduces_id'), ['reproduces_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_attestations_verdict'), ['verdict'], unique=False)

    op.create_table('metrics',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('attestation_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('task', sa.String(length=200), nullable=False),
    sa.Column('metric', sa.String(length=100), nullable=False),
    sa.Column('base_value', sa.Float(), nullable=True),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('delta', sa.Float(), nullable=True),
    sa.Column('ci_low', sa.Float(), nullable=True),
    sa.Column('ci_high', sa.Float(), nullable=True),
    sa.Column('n', sa.Integer(), nullable=True),
    sa.Column('higher_is_better', sa.Boolean(), nullable=True),
    sa.Column('latest', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['attestation_id'], ['attestations.id'], ),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_metrics_attestation_id'), ['attestation_id'], unique=False)
        batch_op.create_index('ix_metrics_board', ['task', 'metric', 'latest', 'delta', 'value', 'ci_low', 'model_id'], unique=False)  # noqa: E501
        batch_op.create_index(batch_op.f('ix_metrics_model_id'), ['model_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_metrics_model_id'))
        batch_op.drop_index('ix_metrics_board')
        batch_op.drop_index(batch_op.f('ix_metrics_attestation_id'))

    op.drop_table('metrics')
    with op.batch_alter_table('attestations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attestations_verdict'))
        batch_op.drop_index(batch_op.f('ix_attestations_reproduces_id'))
        batch_op.drop_index(batch_op.f('ix_attestations_published_at'))
        batch_op.drop_index(batch_op.f('ix_attestations_model_id'))

    op.drop_table('attestations')
    with op.batch_alter_table('manifests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_manifests_model_id'))

    op.drop_table('manifests')
    op.drop_table('fingerprints')
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_claims_model_id'))

    op.drop_table('claims')
    with op.batch_alter_table('aliases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_aliases_name'))
        batch_op.drop_index(batch_op.f('ix_aliases_model_id'))

    op.drop_table('aliases')
    op.drop_table('tokens')
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_models_licence'))
        batch_op.drop_index(batch_op.f('ix_models_latest_attestation_id'))
        batch_op.drop_index('ix_models_family')

    op.drop_table('models')
    op.drop_table('keys')
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_at'))

    op.drop_table('audit')
