"""demo portal sessions kept on the server, so logging out ends the session

The demo portal's cookie now carries a random session token; its SHA-256 is a row of portal_session, which logout
deletes. Cookies made before this revision hold no token and simply ask their users to log in again.

Revision ID: b7e3c0d4a912
Revises: 5d2f8a1c9e47
Create Date: 2026-12-07 12:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b7e3c0d4a912'
down_revision = '5d2f8a1c9e47'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('portal_session',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['portal_user.id'], name=op.f('fk_portal_session_user_id_portal_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_portal_session'))
    )
    with op.batch_alter_table('portal_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_portal_session_user_id'), ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('portal_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_portal_session_user_id'))

    op.drop_table('portal_session')
